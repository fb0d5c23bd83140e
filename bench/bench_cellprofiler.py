"""CPU cost per site: the CellProfiler-style baseline against a ViT-S/16 embedding.

Usage: ``python -m bench.bench_cellprofiler --sites 3 --threads 1``. Renders ``--sites``
synthetic sites of ``--site-size`` px (JUMP: 1080) on one plate, scales them as
preprocessing does (per-channel percentiles, through uint16), then times on the same sites
(a) ``paintssl.embed.cellprofiler``: segmentation + cp-measure features with the default
groups and (b) ``vit_small_patch16_224`` with random weights on the site's 224 px tiles
(``embed.tiles.site_tiles``, the embed stage's cell rule), forward on CPU. Both are warmed
up first (numba texture kernel, first torch call). CPU seconds (``time.process_time``: all
threads of this process) do not grow when other jobs share the cores; wall seconds do.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from paintssl.embed.cellprofiler import CellProfilerConfig, feature_names, measure_site
from paintssl.embed.segment import segment_site
from paintssl.embed.tiles import site_tiles
from paintssl.preprocess.codec import U16_MAX, to_uint16
from paintssl.preprocess.images import scale_to_unit
from paintssl.preprocess.plate import dna_otsu
from paintssl.pretrain.backbones import create_backbone
from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.plate import plate_context, render_site
from paintssl.tables import CHANNELS, DNA

TILE = 224


def scaled_sites(n: int, size: int, plate: str) -> list[np.ndarray]:
    """``n`` rendered sites (different wells) as [0, 1] float32, the way sites are stored."""
    ctx = plate_context(SyntheticConfig(site_size=size, sites_per_well=1), plate)
    images = []
    for well in ctx.layout["well"].iloc[13 : 13 + n]:  # inner wells: no edge effect
        raw = render_site(ctx, well, 1)
        low, high = np.percentile(raw, [0.01, 99.9], axis=(1, 2))
        merged = to_uint16(scale_to_unit(raw, low, high))
        images.append(merged.astype(np.float32) / np.float32(U16_MAX))
    return images


def clocks() -> np.ndarray:
    return np.array([time.process_time(), time.perf_counter()])


def time_cellprofiler(image: np.ndarray, cfg: CellProfilerConfig) -> dict[str, float]:
    otsu = dna_otsu(image[CHANNELS.index(DNA)])
    start = clocks()
    nuclei, cells = segment_site(image, CHANNELS, otsu, cfg.nucleus_diameter,
                                 cfg.cytoplasm_channel, cfg.exclude_border)  # fmt: skip
    segmented = clocks()
    table = measure_site(image, CHANNELS, nuclei, cells, cfg.feature_groups, cfg.compartments,
                         cfg.texture_scales)  # fmt: skip
    done = clocks()
    return {"segment_cpu": (segmented - start)[0], "measure_cpu": (done - segmented)[0],
            "cpu": (done - start)[0], "wall": (done - start)[1], "cells": len(table)}  # fmt: skip


@torch.inference_mode()
def time_vit(image: np.ndarray, model: torch.nn.Module, batch_size: int) -> dict[str, float]:
    start = clocks()
    otsu = dna_otsu(image[CHANNELS.index(DNA)])
    tiles = site_tiles(image, CHANNELS.index(DNA), otsu, TILE, TILE)
    x = torch.from_numpy((tiles - 0.5) / 0.25)
    embedding = torch.cat([model(b) for b in x.split(batch_size)]).mean(0)
    done = clocks()
    assert torch.isfinite(embedding).all()
    return {"cpu": (done - start)[0], "wall": (done - start)[1], "tiles": len(tiles)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--site-size", type=int, default=1080)
    parser.add_argument("--plate", default="src01_b01_p01")
    parser.add_argument("--nucleus-diameter", type=float, default=18.0, help="synthetic: ~18")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = CellProfilerConfig(nucleus_diameter=args.nucleus_diameter)
    images = scaled_sites(args.sites, args.site_size, args.plate)
    torch.manual_seed(0)
    model = create_backbone("vit_small_patch16_224", img_size=TILE).eval()
    with threadpool_limits(args.threads):
        feature_names(tuple(CHANNELS), cfg.feature_groups, cfg.compartments, cfg.texture_scales)
        time_vit(images[0][:, :TILE, :TILE], model, args.batch_size)  # warm-up
        rows = [(time_cellprofiler(im, cfg), time_vit(im, model, args.batch_size))
                for im in images]  # fmt: skip
    n_features = len(feature_names(tuple(CHANNELS), cfg.feature_groups, cfg.compartments,
                                   cfg.texture_scales))  # fmt: skip
    print(f"{args.sites} synthetic sites of {args.site_size} px ({args.plate}), "
          f"{args.threads} thread(s); CellProfiler: {n_features} features per cell, "
          f"groups {', '.join(cfg.feature_groups)}")  # fmt: skip
    print(f"{'site':>4} {'cells':>5} {'segment':>8} {'measure':>8} {'CP cpu':>8} {'CP wall':>8} "
          f"{'tiles':>5} {'ViT cpu':>8} {'ViT wall':>8} {'ratio':>6}")  # fmt: skip
    for i, (cp, vit) in enumerate(rows):
        print(f"{i:>4} {cp['cells']:>5} {cp['segment_cpu']:>8.2f} {cp['measure_cpu']:>8.2f} "
              f"{cp['cpu']:>8.2f} {cp['wall']:>8.2f} {vit['tiles']:>5} {vit['cpu']:>8.2f} "
              f"{vit['wall']:>8.2f} {cp['cpu'] / vit['cpu']:>6.1f}")  # fmt: skip
    cp_cpu = np.mean([cp["cpu"] for cp, _ in rows])
    vit_cpu = np.mean([vit["cpu"] for _, vit in rows])
    print(f"mean CPU s per site: CellProfiler {cp_cpu:.2f}, ViT-S/16 {vit_cpu:.2f}, "
          f"ratio {cp_cpu / vit_cpu:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
