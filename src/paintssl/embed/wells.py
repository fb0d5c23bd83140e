"""Site embeddings -> well embeddings (no torch, so the gather jobs start fast)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from paintssl.tables import (
    CELL_COUNT,
    N_SITES,
    N_TILES,
    PLATE,
    SITE,
    WELL_KEYS,
    feature_columns,
    write_parquet,
)


def embedding_columns(dim: int) -> list[str]:
    """Feature column names ``emb_0000`` ... for a ``dim``-dimensional embedding."""
    return [f"emb_{i:04d}" for i in range(dim)]


def manifest_wells(sites: pd.DataFrame) -> pd.DataFrame:
    """Return the well rows and counts of one plate's manifest (for models embedding no tile).

    ``WELL_KEYS``, ``Metadata_n_sites``, ``Metadata_n_tiles`` (0) and ``Metadata_cell_count``
    (the sum of the sites' ``cell_count``), as :func:`aggregate_wells` writes them; one row per
    well, sorted by ``WELL_KEYS``. Raises ``ValueError`` for the sites of several plates.
    """
    plates = sites[PLATE].unique()
    if len(plates) != 1:
        raise ValueError(f"expected the sites of one plate, got plates {sorted(plates)}")
    wells = (
        sites.groupby(list(WELL_KEYS), sort=True)
        .agg(**{N_SITES: (SITE, "size"), CELL_COUNT: ("cell_count", "sum")})
        .reset_index()
    )
    wells.insert(len(WELL_KEYS) + 1, N_TILES, np.zeros(len(wells), dtype=np.int64))
    return wells


def aggregate_wells(
    sites: pd.DataFrame, method: Literal["two_stage", "flat"] = "two_stage"
) -> pd.DataFrame:
    """Average site embeddings to wells.

    ``two_stage`` averages tiles to sites, then sites to wells (the paper's text);
    ``flat`` averages all tiles of a well at once (the authors' code), i.e. a
    tile-count-weighted mean of the site means.
    """
    if method not in ("two_stage", "flat"):
        raise ValueError(f"unknown well aggregation {method!r}; use 'two_stage' or 'flat'")
    features = feature_columns(sites)
    weights = sites[N_TILES] if method == "flat" else pd.Series(1.0, index=sites.index)
    weighted = sites[features].mul(weights, axis=0)
    groups = sites.assign(_w=weights).groupby(list(WELL_KEYS), sort=True)
    wells = weighted.groupby([sites[k] for k in WELL_KEYS], sort=True).sum()
    wells = wells.div(groups["_w"].sum().to_numpy(), axis=0)
    counts = groups.agg(
        Metadata_n_sites=(SITE, "size"),
        Metadata_n_tiles=(N_TILES, "sum"),
        Metadata_cell_count=(CELL_COUNT, "sum"),
    )
    return counts.join(wells.astype(np.float32)).reset_index()


def gather_embeddings(
    shards: Sequence[str | Path],
    out: str | Path,
    method: Literal["two_stage", "flat"] = "two_stage",
) -> None:
    """Concatenate the site-level shards of a plate and write well-level embeddings."""
    sites = pd.concat([pd.read_parquet(s) for s in shards], ignore_index=True)
    if sites.empty:
        raise ValueError(f"no sites in shards {list(shards)}")
    write_parquet(aggregate_wells(sites, method), out)
