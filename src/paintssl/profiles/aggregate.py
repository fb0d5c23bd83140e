"""Replicate profiles: well profiles averaged to the batch, source and consensus levels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pycytominer import aggregate

from paintssl.tables import (
    LEVEL_KEYS,
    N_WELLS,
    PERTURBATION_COLUMNS,
    feature_columns,
    write_parquet,
)


def aggregate_level(wells: pd.DataFrame, level: str) -> pd.DataFrame:
    """Mean replicate profiles at ``level`` (batch, source or consensus)."""
    try:
        keys = list(LEVEL_KEYS[level])
    except KeyError:
        raise ValueError(f"unknown level {level!r}; expected one of {sorted(LEVEL_KEYS)}") from None
    features = feature_columns(wells)
    profiles = aggregate(wells, strata=keys, features=features, operation="mean", output_type=None)
    labels = wells.groupby(keys, dropna=False)[list(PERTURBATION_COLUMNS)].first()
    n_wells = wells.groupby(keys, dropna=False).size().rename(N_WELLS)
    annotated = profiles.merge(labels.join(n_wells).reset_index(), on=keys, how="left")
    return annotated[[*keys, *PERTURBATION_COLUMNS, N_WELLS, *features]]


def aggregate_profiles(well: str | Path, outs: dict[str, str | Path]) -> None:
    """Write each aggregated level in ``outs`` ({level: path}) from the well profiles."""
    wells = pd.read_parquet(well)
    for level, path in outs.items():
        write_parquet(aggregate_level(wells, level), path)
