"""Embed preprocessed sites with an exported backbone: tiles -> sites (sharded) -> wells."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch
from torch.utils.data import DataLoader, Dataset

from paintssl.backbones import ExportedModel, load_exported
from paintssl.wells import SITE_KEYS

log = logging.getLogger(__name__)

CELL_THRESHOLD_FACTOR = 0.7
CELL_MIN_FRACTION = 0.01


def tile_origins(height: int, width: int, tile: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the full tiles of a site; partial edge tiles are dropped."""
    if height < tile or width < tile:
        raise ValueError(f"site of {height}x{width} px is smaller than the {tile} px tile")
    return [
        (y, x)
        for y in range(0, height - tile + 1, stride)
        for x in range(0, width - tile + 1, stride)
    ]


def has_cells(
    dna: np.ndarray,
    otsu: float,
    factor: float = CELL_THRESHOLD_FACTOR,
    min_fraction: float = CELL_MIN_FRACTION,
) -> bool:
    """The training crop rule: DNA > ``factor`` x Otsu on at least ``min_fraction`` of pixels."""
    return float(np.mean(dna > factor * otsu)) >= min_fraction


def site_tiles(
    image: np.ndarray, dna_index: int, otsu: float, tile: int, stride: int
) -> np.ndarray:
    """Cut a (C, H, W) site into tiles with cells; keep the central tile if none has any.

    Returns an array of shape (T, C, tile, tile) with T >= 1.
    """
    _, height, width = image.shape
    origins = tile_origins(height, width, tile, stride)
    kept = [
        (y, x) for y, x in origins if has_cells(image[dna_index, y : y + tile, x : x + tile], otsu)
    ]
    if not kept:
        kept = [((height - tile) // 2, (width - tile) // 2)]
    return np.stack([image[:, y : y + tile, x : x + tile] for y, x in kept])


def shard_rows(sites: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """Contiguous, near-equal block ``shard`` of the sites sorted by well and site."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1}")
    ordered = sites.sort_values(SITE_KEYS, ignore_index=True)
    bounds = np.linspace(0, len(ordered), n_shards + 1).round().astype(int)
    return ordered.iloc[bounds[shard] : bounds[shard + 1]]


class SiteTiles(Dataset):
    """Normalised tiles of each site of a manifest (one item = all kept tiles of one site)."""

    def __init__(self, sites: pd.DataFrame, root: Path, model: ExportedModel, stride: int) -> None:
        self.sites = sites.reset_index(drop=True)
        self.root = root
        self.tile = model.img_size
        self.stride = stride
        self.dna_index = list(model.channels).index("DNA")
        self.mean = np.asarray(model.mean, dtype=np.float32)[:, None, None, None]
        self.std = np.asarray(model.std, dtype=np.float32)[:, None, None, None]

    def __len__(self) -> int:
        return len(self.sites)

    def __getitem__(self, index: int) -> torch.Tensor:
        row = self.sites.iloc[index]
        image = tifffile.imread(self.root / row["path"]).astype(np.float32) / 65535.0
        tiles = site_tiles(image, self.dna_index, float(row["dna_otsu"]), self.tile, self.stride)
        tiles = (tiles.transpose(1, 0, 2, 3) - self.mean) / self.std  # normalise per channel
        return torch.from_numpy(np.ascontiguousarray(tiles.transpose(1, 0, 2, 3)))


def check_channels(sites: pd.DataFrame, model: ExportedModel, manifest: str | Path) -> None:
    """Refuse images whose channel names or order differ from the model's training channels."""
    found = set(sites["channels"])
    expected = ",".join(model.channels)
    if found != {expected}:
        raise ValueError(
            f"{manifest}: images have channels {sorted(found)} but the model was trained on "
            f"'{expected}'; preprocess with the same `channels` as the pretraining run"
        )


def _tile_batches(loader: DataLoader, batch_size: int) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Regroup per-site tile stacks into batches of about ``batch_size`` tiles."""
    pending, counts = [], []
    for tiles in loader:
        pending.append(tiles)
        counts.append(len(tiles))
        if sum(counts) >= batch_size:
            yield torch.cat(pending), counts
            pending, counts = [], []
    if pending:
        yield torch.cat(pending), counts


@torch.inference_mode()
def embed_sites(
    sites: pd.DataFrame,
    root: Path,
    model: ExportedModel,
    stride: int,
    batch_size: int,
    num_workers: int,
    device: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean tile embedding and tile count of each site, in the order of ``sites``."""
    net = model.model.to(device)
    loader = DataLoader(
        SiteTiles(sites, root, model, stride),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=device.startswith("cuda"),
    )
    use_amp = device.startswith("cuda")
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
    site_vectors, tile_counts = [], []
    for tiles, counts in _tile_batches(loader, batch_size):
        with amp:
            features = net(tiles.to(device, non_blocking=True)).float().cpu()
        for chunk in torch.split(features, counts):
            site_vectors.append(chunk.mean(dim=0).numpy())
            tile_counts.append(len(chunk))
        log.info("embedded %d/%d sites", len(site_vectors), len(sites))
    return np.stack(site_vectors), np.asarray(tile_counts)


def embedding_columns(dim: int) -> list[str]:
    """Feature column names ``emb_0000`` ... for a ``dim``-dimensional embedding."""
    return [f"emb_{i:04d}" for i in range(dim)]


def embed_shard(
    manifest: str | Path,
    weights: str | Path,
    out: str | Path,
    shard: int,
    n_shards: int,
    stride: int | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str = "cpu",
) -> None:
    """Write site-level embeddings of one shard of one plate to Parquet.

    Parameters
    ----------
    manifest : ``results/images/{plate}/manifest.parquet``.
    weights : exported ``weights.pt``.
    out : output Parquet, one row per site.
    shard, n_shards : which contiguous block of the plate's sites to embed.
    stride : tile stride in pixels (default: the model's tile size, no overlap).
    batch_size : tiles per forward pass.
    num_workers : DataLoader worker processes reading images.
    device : ``cpu`` or ``cuda``.
    """
    model = load_exported(weights)
    sites = pd.read_parquet(manifest)
    check_channels(sites, model, manifest)
    block = shard_rows(sites, shard, n_shards)
    stride = stride or model.img_size
    dim = model.model.num_features
    if len(block):
        vectors, n_tiles = embed_sites(
            block, Path(manifest).parent, model, stride, batch_size, num_workers, device
        )
    else:
        vectors, n_tiles = np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=int)
    table = block[[*SITE_KEYS, "cell_count"]].rename(columns={"cell_count": "Metadata_cell_count"})
    table = table.reset_index(drop=True).assign(Metadata_n_tiles=n_tiles)
    features = pd.DataFrame(vectors.astype(np.float32), columns=embedding_columns(dim))
    pd.concat([table, features], axis=1).to_parquet(out, index=False)
