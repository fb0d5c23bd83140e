"""The long-format evaluation table: its columns, rows, settings and chance-level inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.tables import CELL_LINE, PERT_TYPE, write_tsv

TREATMENT = "trt"
TABLE_COLUMNS = [
    "metric",
    "level",
    "setting",
    "variant",
    "value",
    "n_queries",
    "n_groups",
    "p_value",
    "fraction_retrieved",
    "note",
]
F1_COLUMNS = ["metric", "level", "setting", "variant", "k", "value", "n_queries"]
VARIANTS = ("observed", "random_features", "shuffled_labels")


def treatments(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``Metadata_pert_type`` is ``trt`` (controls are never queries)."""
    return df[df[PERT_TYPE] == TREATMENT].reset_index(drop=True)


def chance_inputs(
    meta: pd.DataFrame, feats: np.ndarray, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """Random features of the same shape, and the metadata shuffled against the features."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(feats.shape)
    return noise, meta.iloc[rng.permutation(len(meta))].reset_index(drop=True)


def by_setting(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Split a profile table per cell line, sorted by name."""
    for setting, part in df.groupby(CELL_LINE, sort=True, dropna=False):
        yield str(setting), part.reset_index(drop=True)


def row(metric: str, level: str, setting: str, variant: str, **values: object) -> dict:
    """One row of the long-format table with NA for the fields not given."""
    out = dict.fromkeys(TABLE_COLUMNS, np.nan)
    out.update(metric=metric, level=level, setting=setting, variant=variant, note="")
    out.update(values)
    return out


def write_table(table: pd.DataFrame, out_tsv: str | Path) -> None:
    """Write the long-format table as TSV (NaN as empty cells), creating the folder."""
    write_tsv(table, out_tsv)
