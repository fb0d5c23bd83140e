"""Tiles of a site and shards of a plate (numpy only: no torch import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from paintssl.preprocess.codec import cell_mask, has_cells
from paintssl.tables import SITE_KEYS

TOKENS: tuple[str, ...] = ("pooled", "cls", "mean_patch")
"""Summaries of a block's final-normed tokens: the network's own pooled feature
(``forward_head(pre_logits=True)``), the class token, the mean of the patch tokens."""
FLIPS: tuple[str, ...] = ("h", "v", "hv")
"""Flips of a tile: horizontal (mirror left-right), vertical, both (a 180 degree turn)."""


@dataclass(frozen=True)
class EmbedConfig:
    """The ``embed`` section of the config.

    Attributes
    ----------
    n_shards : jobs per model and plate (contiguous blocks of sites).
    batch_size : tiles per forward pass.
    stride : tile stride in pixels; None = the model's tile size (no overlap).
    well_aggregation : ``two_stage`` (tiles -> sites -> wells) or ``flat`` (tiles -> wells).
    precision : ``fp32`` (default) or ``bf16`` autocast of the network's forward pass.
    tokens : summaries of each block's tokens, concatenated in this order (``TOKENS``):
        ``pooled`` (the network's own feature, the default), ``cls``, ``mean_patch``.
    blocks : the blocks whose tokens are summarised, as Python indices (-1 = the last).
    flips : flips of each tile (``FLIPS``) whose features are averaged with the tile's.
    """

    n_shards: int = 1
    batch_size: int = 128
    stride: int | None = None
    well_aggregation: Literal["two_stage", "flat"] = "two_stage"
    precision: Literal["fp32", "bf16"] = "fp32"
    tokens: tuple[str, ...] = ("pooled",)
    blocks: tuple[int, ...] = (-1,)
    flips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("tokens", "blocks", "flips"):  # YAML gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, values, valid in (("tokens", self.tokens, TOKENS), ("flips", self.flips, FLIPS)):
            unknown = [v for v in values if v not in valid]
            if unknown or len(set(values)) < len(values):
                raise ValueError(
                    f"embed.{name} {list(values)}: list entries of {list(valid)}, each at most once"
                )
        if not self.tokens or not self.blocks:
            raise ValueError("embed.tokens and embed.blocks need at least one entry each")


def tile_origins(height: int, width: int, tile: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the full tiles of a site; partial edge tiles are dropped."""
    if height < tile or width < tile:
        raise ValueError(f"site of {height}x{width} px is smaller than the {tile} px tile")
    return [
        (y, x)
        for y in range(0, height - tile + 1, stride)
        for x in range(0, width - tile + 1, stride)
    ]


def site_tiles(
    image: np.ndarray, dna_index: int, otsu: float, tile: int, stride: int
) -> np.ndarray:
    """Cut a (C, H, W) site into tiles with cells (the cell rule); else keep the central tile.

    Returns an array of shape (T, C, tile, tile) with T >= 1.
    """
    _, height, width = image.shape
    origins = tile_origins(height, width, tile, stride)
    cells = cell_mask(image[dna_index], otsu)
    kept = [(y, x) for y, x in origins if has_cells(cells[y : y + tile, x : x + tile])]
    if not kept:
        kept = [((height - tile) // 2, (width - tile) // 2)]
    return np.stack([image[:, y : y + tile, x : x + tile] for y, x in kept])


def shard_rows(sites: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """Contiguous, near-equal block ``shard`` of the sites sorted by well and site."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1}")
    ordered = sites.sort_values(list(SITE_KEYS), ignore_index=True)
    bounds = np.linspace(0, len(ordered), n_shards + 1).round().astype(int)
    return ordered.iloc[bounds[shard] : bounds[shard + 1]]
