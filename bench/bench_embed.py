"""Embedding throughput of full-size sites, stage by stage and end to end (sites/s).

Usage: ``python -m bench.bench_embed --sites 16 --workers 1 [--device auto] [--workdir DIR]``
(about 2 minutes on 2 CPU cores; on a GPU machine unchanged, e.g. ``--sites 256 --workers 8``).
Renders ``--sites`` synthetic 5-channel sites of ``--site-size`` px (JUMP: 1080) on one plate
(``paintssl.synthetic``), preprocesses them with ``preprocess_plate`` (merged uint16 TIFFs and
a manifest) and exports ``vit_small_patch16_224`` with random weights through ``pretrain``
(method ``random``: 5 channels, 224 px tiles, channel statistics of the manifest), all cached
in ``--workdir`` (default: a temporary folder). Then times, in one run on the same sites:

- decode: the embed DataLoader (``--workers`` processes) reading each TIFF as uint16;
- tiles: the embed stage's dataset (``embed.shard.SiteTiles``: decode, float, cell-rule
  tiles, per-channel normalisation) through the same DataLoader;
- transfer: host -> device of (u16) whole uint16 sites, converted to float on the device, and
  of (f32) the dataset's float32 tiles site by site, as the embed loop moves them; pinned
  memory and ``non_blocking`` copies on CUDA (pinned beforehand, not timed); on CPU (u16) is
  the float conversion alone and (f32) no copy at all;
- forward: the model alone on the tiles, already on the device, in batches of
  ``--batch-size`` (fp32, and bf16 autocast on CUDA);
- end to end: ``embed.shard.embed_shard`` (the ``embed_shard`` rule's function: weights load,
  DataLoader, forward, Parquet), one shard holding every site.

The DataLoader and transfer stages are timed ``--repeats`` times after one untimed pass (the
first touches of fresh memory cost several steady passes) and the best is kept; the forward
and the end-to-end run are timed once, after a warm-up batch. Then shares each stage of the
embed path (decode, tiling, f32 transfer, forward at the package's precision) in their serial
sum, set beside the end-to-end time (DataLoader workers overlap reading with the forward).
TIFFs are read from the page cache, so reads from a cold file system are not included. On
CUDA every timing ends with ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeVar

import pandas as pd
import tifffile
import torch
from torch.utils.data import DataLoader, Dataset

from paintssl.embed.shard import SiteTiles, embed_shard
from paintssl.embed.tiles import EmbedConfig
from paintssl.preprocess.codec import U16_MAX, read_site_tiff
from paintssl.preprocess.plate import PreprocessConfig, preprocess_plate
from paintssl.pretrain.backbones import load_exported
from paintssl.pretrain.config import ModelConfig
from paintssl.pretrain.run import pretrain
from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.layout import plate_layout
from paintssl.synthetic.plate import PlateContext, plate_context, render_site
from paintssl.tables import CHANNELS, PLATE, SITE, WELL

T = TypeVar("T")
PLATE_NAME = "src01_b01_p01"
MODEL = ModelConfig(method="random", backbone="vit_small_patch16_224", img_size=224)


@lru_cache(maxsize=1)
def _context(cfg: SyntheticConfig) -> PlateContext:
    """The plate's shared rendering state, built once per process."""
    return plate_context(cfg, PLATE_NAME)


def _render_one(cfg: SyntheticConfig, folder: Path, well_site: tuple[str, int]) -> dict:
    """Render one site, write its per-channel TIFFs and return its load_data row."""
    well, site = well_site
    row: dict[str, object] = {PLATE: PLATE_NAME, WELL: well, SITE: site}
    for channel, plane in zip(CHANNELS, render_site(_context(cfg), well, site), strict=True):
        name = f"{well}_s{site}_{channel}.tif"
        tifffile.imwrite(folder / name, plane)
        row |= {f"FileName_Orig{channel}": name, f"PathName_Orig{channel}": "."}
    return row


def prepare_sites(folder: Path, n_sites: int, site_size: int, model: ModelConfig = MODEL) -> Path:
    """Render, preprocess and export weights into ``folder`` unless done; return the manifest.

    Parameters
    ----------
    folder : cache folder of this ``n_sites``, ``site_size`` and ``model``.
    n_sites : sites to render (the first wells of the plate, then their next sites).
    site_size : side of a site in pixels.
    model : the ``random`` model whose weights are exported to ``folder / "weights.pt"``.
    """
    manifest = folder / "images" / "manifest.parquet"
    if (folder / "weights.pt").exists():  # written last
        return manifest
    per_well = math.ceil(n_sites / 96)
    cfg = SyntheticConfig(site_size=site_size, sites_per_well=per_well)
    wells = plate_layout(cfg, PLATE_NAME)["well"]
    sites = [(w, s) for w in wells for s in range(1, per_well + 1)][:n_sites]
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    with ProcessPoolExecutor(min(cpus, n_sites)) as pool:
        rows = list(pool.map(partial(_render_one, cfg, raw), sites))
    pd.DataFrame(rows).to_csv(raw / "load_data.csv", index=False)
    preprocess_plate(raw / "load_data.csv", "source_1", "source_1_batch_1", manifest,
                     manifest.parent / "sites", PreprocessConfig(), threads=cpus)  # fmt: skip
    pretrain([manifest], folder / "weights.pt", model, seed=0)
    return manifest


class SiteArrays(Dataset):
    """The uint16 site images of a manifest, decoded as the embed dataset reads them."""

    def __init__(self, manifest: Path) -> None:
        self.paths = [manifest.parent / p for p in pd.read_parquet(manifest)["path"]]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(read_site_tiff(self.paths[index]))


def timed(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(result, wall seconds) of ``fn()``, the device synchronised before and after."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - start


def best_of(fn: Callable[[], T], device: torch.device, repeats: int) -> tuple[T, float]:
    """(last result, fewest seconds) of ``repeats`` timed calls after one untimed call."""
    out = fn()
    seconds = []
    for _ in range(repeats):
        del out
        out, s = timed(fn, device)
        seconds.append(s)
    return out, min(seconds)


def load_all(dataset: Dataset, workers: int) -> list[torch.Tensor]:
    """Every item of ``dataset`` through a DataLoader as the embed stage builds it."""
    return list(DataLoader(dataset, batch_size=None, num_workers=workers))


def to_device_u16(sites: list[torch.Tensor], device: torch.device) -> None:
    """Copy uint16 sites to ``device`` and scale them to float [0, 1] there."""
    for site in sites:
        site.to(device, non_blocking=True).float().div_(U16_MAX)


def to_device(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Copy ``tensors`` to ``device`` (a no-op on CPU)."""
    return [t.to(device, non_blocking=True) for t in tensors]


@torch.inference_mode()
def forward_all(net: torch.nn.Module, batches: list[torch.Tensor], bf16: bool) -> None:
    """The model on every batch, in fp32 or under bf16 autocast (CUDA only)."""
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    with amp:
        for batch in batches:
            net(batch)


def pinned(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """``tensors`` in pinned host memory on CUDA, as the DataLoader gives them there."""
    return [t.pin_memory() for t in tensors] if device.type == "cuda" else tensors


def resolve(name: str) -> torch.device:
    """``auto``: cuda when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def stage_seconds(
    manifest: Path, args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Seconds of the loader, transfer and forward stages over all sites of ``manifest``."""
    model = load_exported(manifest.parent.parent / "weights.pt")
    n_workers, repeats = args.workers, args.repeats
    raw = SiteArrays(manifest)
    decoded, s_decode = best_of(lambda: load_all(raw, n_workers), device, repeats)
    sites = pd.read_parquet(manifest)
    dataset = SiteTiles(sites, manifest.parent, model, args.stride or model.img_size)
    tiles, s_tiles = best_of(lambda: load_all(dataset, n_workers), device, repeats)
    decoded, tiles = pinned(decoded, device), pinned(tiles, device)
    _, s_u16 = best_of(lambda: to_device_u16(decoded, device), device, repeats)
    on_device, s_f32 = best_of(lambda: to_device(tiles, device), device, repeats)
    batches = list(torch.cat(on_device).split(args.batch_size))
    net = model.model.to(device)
    seconds = {"decode": s_decode, "tiles": s_tiles, "transfer_u16": s_u16, "transfer_f32": s_f32}
    for bf16 in (False, True) if device.type == "cuda" else (False,):
        forward_all(net, batches[:1], bf16)  # warm-up
        seconds["forward_bf16" if bf16 else "forward_fp32"] = timed(
            lambda bf16=bf16: forward_all(net, batches, bf16), device
        )[1]
    seconds["tiles_per_site"] = sum(map(len, tiles)) / len(tiles)
    return seconds


def end_to_end_seconds(manifest: Path, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds of ``embed_shard`` on every site of ``manifest`` (one shard)."""
    cfg = EmbedConfig(batch_size=args.batch_size, stride=args.stride)
    run = partial(embed_shard, manifest, manifest.parent.parent / "weights.pt",
                  manifest.parent.parent / "embeddings.parquet", 0, cfg, args.workers,
                  device.type)  # fmt: skip
    return timed(run, device)[1]


def report(seconds: dict[str, float], n_sites: int, device: torch.device, workers: int) -> None:
    """Print sites/s per stage and the shares of the embed path's stages."""
    cuda = device.type == "cuda"
    forward = "forward_bf16" if cuda else "forward_fp32"
    rows = {
        f"decode (DataLoader, workers={workers})": seconds["decode"],
        f"tiles (SiteTiles, workers={workers})": seconds["tiles"],
        "transfer u16 sites + float on device" if cuda else "u16 sites -> float (no copy)": (
            seconds["transfer_u16"]
        ),
        "transfer f32 tiles (embed path)" if cuda else "f32 tiles (no copy on cpu)": (
            seconds["transfer_f32"]
        ),
        "forward fp32": seconds["forward_fp32"],
        **({"forward bf16 autocast": seconds["forward_bf16"]} if cuda else {}),
        "end to end (embed_shard)": seconds["end_to_end"],
    }
    print(f"{'stage':<40} {'sites/s':>10} {'ms/site':>9}")
    for name, s in rows.items():
        print(f"{name:<40} {n_sites / max(s, 1e-9):10.4g} {1000 * s / n_sites:9.2f}")
    path = {
        "decode": seconds["decode"],
        "tile + normalise": seconds["tiles"] - seconds["decode"],
        "transfer f32 tiles": seconds["transfer_f32"],
        forward.replace("_", " "): seconds[forward],
    }
    serial = sum(path.values())
    print(f"where the time goes (embed path, stages in series: {serial:.2f} s; end to end "
          f"{seconds['end_to_end']:.2f} s):")  # fmt: skip
    for name, s in path.items():
        print(f"  {name:<20} {s:8.2f} s {100 * s / serial:6.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=16)
    parser.add_argument("--site-size", type=int, default=1080)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=EmbedConfig.batch_size, help="tiles")
    parser.add_argument("--stride", type=int, default=None, help="tile stride (None: tile size)")
    parser.add_argument("--repeats", type=int, default=3, help="of the loader/transfer stages")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (its default)")
    parser.add_argument("--workdir", type=Path, default=None, help="cache (default: temporary)")
    args = parser.parse_args()
    device = resolve(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.workdir or Path(tmp)) / f"sites{args.sites}_{args.site_size}px"
        start = time.perf_counter()
        manifest = prepare_sites(folder, args.sites, args.site_size)
        prepared = time.perf_counter() - start
        seconds = stage_seconds(manifest, args, device)
        seconds["end_to_end"] = end_to_end_seconds(manifest, args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.sites} sites of {args.site_size} px, {seconds['tiles_per_site']:.1f} tiles of "
          f"{MODEL.img_size} px per site, {MODEL.backbone}, batch {args.batch_size} tiles; "
          f"device {name}, {torch.get_num_threads()} torch threads; "
          f"render + preprocess {prepared:.1f} s")  # fmt: skip
    report(seconds, args.sites, device, args.workers)


if __name__ == "__main__":
    main()
