"""The one home of the table conventions every stage shares, and of atomic writes.

Metadata columns start with ``Metadata_``; every other column of a profile or embedding
table is a feature. Sites, wells and aggregated profiles are identified by the key lists
below; ``LEVEL_KEYS`` defines the replicate levels profiles are aggregated to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")
"""Default Cell Painting channel names, in the order the merged 5-channel TIFFs store them."""
DNA = "DNA"
"""The channel the cell rule and the per-site QC numbers are computed on."""

METADATA_PREFIX = "Metadata_"
SOURCE = "Metadata_Source"
BATCH = "Metadata_Batch"
PLATE = "Metadata_Plate"
WELL = "Metadata_Well"
SITE = "Metadata_Site"
PERTURBATION = "Metadata_JCP2022"
PERT_TYPE = "Metadata_pert_type"
CELL_LINE = "Metadata_cell_line"
TARGET = "Metadata_target"
GENE = "Metadata_gene"
GENE_FAMILY = "Metadata_gene_family"
CELL_COUNT = "Metadata_cell_count"
N_TILES = "Metadata_n_tiles"
N_SITES = "Metadata_n_sites"
N_WELLS = "Metadata_n_wells"

LOAD_DATA_KEYS: tuple[str, ...] = (PLATE, WELL, SITE)
"""What identifies a site in a plate's ``load_data.csv`` and in its manifest."""
SITE_KEYS: tuple[str, ...] = (SOURCE, BATCH, PLATE, WELL, SITE)
"""What identifies a site row of an embedding shard (the plate's labels included)."""
WELL_KEYS: tuple[str, ...] = SITE_KEYS[:-1]
"""What identifies a well row of a per-plate embedding table."""
ANNOTATION_KEYS: tuple[str, ...] = (PLATE, WELL)
"""The join keys of embeddings and the well metadata table."""

LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "batch": (CELL_LINE, SOURCE, BATCH, PERTURBATION),
    "source": (CELL_LINE, SOURCE, PERTURBATION),
    "consensus": (CELL_LINE, PERTURBATION),
}
"""Replicate levels above the well: the columns whose wells are averaged together."""
LEVELS: tuple[str, ...] = tuple(LEVEL_KEYS)
PROFILE_LEVELS: tuple[str, ...] = ("well", *LEVELS)
MULTILABEL_SEP = "|"
"""Separates the labels of a multi-label cell (a compound's targets: ``T1|T2``)."""
PERTURBATION_COLUMNS: tuple[str, ...] = (PERT_TYPE, TARGET, GENE, GENE_FAMILY)
"""Labels that are constant within a perturbation and carried through aggregation."""


def is_metadata(column: object) -> bool:
    """Return True for ``Metadata_*`` columns."""
    return str(column).startswith(METADATA_PREFIX)


def metadata_columns(df: pd.DataFrame) -> list[str]:
    """Return the ``Metadata_*`` columns of ``df``, in table order."""
    return [c for c in df.columns if is_metadata(c)]


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Every column of ``df`` that is not ``Metadata_*``, in table order."""
    return [c for c in df.columns if not is_metadata(c)]


def split_features(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Metadata columns (index reset) and the features as a float64 matrix."""
    return df[metadata_columns(df)].reset_index(drop=True), df[feature_columns(df)].to_numpy(
        dtype=np.float64
    )


def split_labels(labels: pd.Series) -> pd.Series:
    """Split multi-label cells into sorted lists of unique, stripped, non-empty labels."""
    return labels.map(
        lambda s: (
            [] if pd.isna(s) else sorted({x.strip() for x in str(s).split(MULTILABEL_SEP)} - {""})
        )
    )


def codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a label column (missing values get their own code)."""
    return pd.factorize(values.astype("string").fillna("<NA>"))[0]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    A killed or failing writer leaves no file that a workflow manager would take as
    finished, only a ``.tmp`` file that the next attempt overwrites.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` (without its index) to Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_tsv(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as TSV atomically: NaN as ``NA``, floats with 6 significant digits."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")


MIN_FAMILY, MAX_FAMILY = 4, 10
"""Gene families of this many perturbations (per cell line) are scored (gene-family AMI)."""


def family_sizes(meta: pd.DataFrame) -> pd.Series:
    """Perturbations (per cell line) of each gene family in ``meta``, largest first."""
    profiles = meta.drop_duplicates([CELL_LINE, PERTURBATION])
    return profiles[GENE_FAMILY].astype("string").value_counts()


def usable_families(
    meta: pd.DataFrame, min_size: int = MIN_FAMILY, max_size: int = MAX_FAMILY
) -> list[str]:
    """Gene families of ``min_size``-``max_size`` perturbations (per cell line) in ``meta``."""
    counts = family_sizes(meta)
    return sorted(counts.index[counts.between(min_size, max_size)])
