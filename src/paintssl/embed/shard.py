"""Embed preprocessed sites with an exported backbone: tiles -> sites (sharded) -> wells."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from paintssl.embed.features import feature_width, tile_features
from paintssl.embed.tiles import EmbedConfig, shard_rows, site_tiles
from paintssl.embed.wells import aggregate_wells, embedding_columns
from paintssl.preprocess.codec import read_scaled_site
from paintssl.pretrain.backbones import ExportedModel, load_exported
from paintssl.tables import CELL_COUNT, DNA, N_TILES, SITE_KEYS, write_parquet

log = logging.getLogger(__name__)


class SiteTiles(Dataset):
    """Normalised tiles of each site of a manifest (one item = all kept tiles of one site)."""

    def __init__(self, sites: pd.DataFrame, root: Path, model: ExportedModel, stride: int) -> None:
        self.sites = sites.reset_index(drop=True)
        self.root = root
        self.tile = model.img_size
        self.stride = stride
        self.dna_index = list(model.channels).index(DNA)
        self.mean = np.asarray(model.mean, dtype=np.float32)[:, None, None, None]
        self.std = np.asarray(model.std, dtype=np.float32)[:, None, None, None]

    def __len__(self) -> int:
        return len(self.sites)

    def __getitem__(self, index: int) -> torch.Tensor:
        row = self.sites.iloc[index]
        image = read_scaled_site(self.root / row["path"])
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


def _tile_batches(
    loader: DataLoader, batch_size: int, device: str
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Regroup per-site tile stacks into batches of about ``batch_size`` tiles on ``device``.

    Each site's stack moves to the device on its own, straight from the DataLoader's pinned
    memory (CUDA), so the copy is asynchronous; a ``torch.cat`` on the host first would copy
    the tiles into pageable memory and make the transfer synchronous.
    """
    pending, counts = [], []
    for tiles in loader:
        pending.append(tiles.to(device, non_blocking=True))
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
    cfg: EmbedConfig,
    num_workers: int,
    device: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean tile feature (:func:`tile_features`) and tile count of each site, in site order.

    Tiles at ``cfg.stride`` (None: the model's tile size); ``cfg.precision`` ``bf16`` runs
    the network under bf16 autocast (features and means in fp32).
    """
    net = model.model.to(device)
    loader = DataLoader(
        SiteTiles(sites, root, model, cfg.stride or model.img_size),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=device.startswith("cuda"),
    )
    device_type = torch.device(device).type
    bf16 = cfg.precision == "bf16"
    amp = torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext()
    site_vectors, tile_counts = [], []
    for tiles, counts in _tile_batches(loader, cfg.batch_size, device):
        with amp:
            features = tile_features(net, tiles, cfg).cpu()
        for chunk in torch.split(features, counts):
            site_vectors.append(chunk.mean(dim=0).numpy())
            tile_counts.append(len(chunk))
        log.info("embedded %d/%d sites", len(site_vectors), len(sites))
    return np.stack(site_vectors), np.asarray(tile_counts)


def site_embeddings(
    manifest: str | Path,
    weights: str | Path,
    shard: int,
    cfg: EmbedConfig,
    num_workers: int = 0,
    device: str = "cpu",
) -> pd.DataFrame:
    """Embeddings of the sites of one shard of one plate, one row per site.

    Parameters
    ----------
    manifest : ``results/images/{plate}/manifest.parquet``.
    weights : exported ``weights.pt``.
    shard : which contiguous block (of ``cfg.n_shards``) of the plate's sites to embed.
    cfg : the embedding settings (stride, tiles per forward pass, features of a tile).
    num_workers : DataLoader worker processes reading images.
    device : ``cpu`` or ``cuda``.

    Returns
    -------
    pandas.DataFrame
        ``SITE_KEYS``, ``Metadata_cell_count``, ``Metadata_n_tiles`` and ``emb_*`` (float32).
    """
    model = load_exported(weights)
    sites = pd.read_parquet(manifest)
    check_channels(sites, model, manifest)
    block = shard_rows(sites, shard, cfg.n_shards)
    dim = feature_width(model.model, cfg)
    if len(block):
        vectors, n_tiles = embed_sites(
            block, Path(manifest).parent, model, cfg, num_workers, device
        )
    else:
        vectors, n_tiles = np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=int)
    table = block[[*SITE_KEYS, "cell_count"]].rename(columns={"cell_count": CELL_COUNT})
    table = table.reset_index(drop=True).assign(**{N_TILES: n_tiles})
    features = pd.DataFrame(vectors.astype(np.float32), columns=embedding_columns(dim))
    return pd.concat([table, features], axis=1)


def embed_shard(
    manifest: str | Path,
    weights: str | Path,
    out: str | Path,
    shard: int,
    cfg: EmbedConfig,
    num_workers: int = 0,
    device: str = "cpu",
) -> None:
    """Write the site embeddings of one shard (:func:`site_embeddings`) to Parquet ``out``."""
    write_parquet(site_embeddings(manifest, weights, shard, cfg, num_workers, device), out)


def embed_plate(
    manifest: str | Path,
    weights: str | Path,
    out: str | Path,
    cfg: EmbedConfig,
    num_workers: int = 0,
    device: str = "cpu",
) -> None:
    """Embed every site of a plate and write its well embeddings (one job, no shards).

    Equals :func:`embed_shard` for each of ``cfg.n_shards`` shards followed by
    :func:`paintssl.embed.wells.gather_embeddings`.
    """
    one_shard = dataclasses.replace(cfg, n_shards=1)
    sites = site_embeddings(manifest, weights, 0, one_shard, num_workers, device)
    write_parquet(aggregate_wells(sites, cfg.well_aggregation), out)
