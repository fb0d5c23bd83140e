"""Profiles computed elsewhere (e.g. JUMP's CellProfiler profiles) as the model ``external``.

Part of the inputs stage: :func:`read_external_profiles` reads and validates the user's
well-level table, raising :class:`paintssl.inputs.InputError` with the file, the column or
row at fault and the fix; :func:`import_external_profiles` writes it as per-plate well
embeddings with the columns of :func:`paintssl.embed.wells.aggregate_wells`, so that the
normal profile chain and evaluation run unchanged. ``Metadata_n_sites``,
``Metadata_n_tiles`` and ``Metadata_cell_count`` are unknown for such a table: NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.inputs import PARQUET_SUFFIXES, InputError, listed, require_unique, row_names
from paintssl.tables import (
    ANNOTATION_KEYS,
    BATCH,
    CELL_COUNT,
    N_SITES,
    N_TILES,
    PLATE,
    SOURCE,
    WELL,
    WELL_KEYS,
    feature_columns,
    is_metadata,
    metadata_columns,
    write_parquet,
)

log = logging.getLogger(__name__)

COUNT_COLUMNS = (N_SITES, N_TILES, CELL_COUNT)


def _read(path: Path) -> pd.DataFrame:
    """Parquet, or CSV/TSV (optionally compressed) with the ``Metadata_*`` columns as str."""
    if not path.is_file():
        raise InputError(f"{path}: external profiles not found; check the model's `profiles`")
    if path.suffix in PARQUET_SUFFIXES:
        table = pd.read_parquet(path)
    else:
        sep = "\t" if ".tsv" in path.suffixes else ","
        try:
            header = pd.read_csv(path, sep=sep, nrows=0).columns
        except pd.errors.EmptyDataError:
            raise InputError(f"{path}: file is empty; it needs a header line and rows") from None
        dtypes = {c: str for c in header if is_metadata(c)}
        table = pd.read_csv(path, sep=sep, dtype=dtypes)
    if table.empty:
        raise InputError(f"{path}: has no rows; add one row per well")
    return table.reset_index(drop=True)


def _check_features(table: pd.DataFrame, path: Path) -> None:
    """Every non-``Metadata_`` column is numeric and has a value on the run's plates."""
    features = feature_columns(table)
    if not features:
        raise InputError(
            f"{path}: no feature columns (every column starts with 'Metadata_'); add the "
            f"profile's numeric feature columns"
        )
    bad = [
        c
        for c in features
        if not pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c])
    ]
    if bad:
        first = table[bad[0]].dropna()
        example = (
            f" (e.g. {first.iloc[0]!r} on {row_names(first.index[:1], path)})" if len(first) else ""
        )
        raise InputError(
            f"{path}: non-numeric feature column(s) {listed(bad)}{example}; every column not "
            f"starting with 'Metadata_' must be numeric: rename annotations to Metadata_<name> "
            f"or drop the columns"
        )
    empty = [c for c in features if table[c].isna().all()]
    if empty:
        raise InputError(
            f"{path}: feature column(s) {listed(empty)} are empty (all NaN) on the run's "
            f"plates; drop them from the table"
        )
    partial = [c for c in features if table[c].isna().any()]
    if partial:
        log.warning("%s: %d feature columns have missing values", path, len(partial))


def read_external_profiles(
    path: str | Path, metadata: pd.DataFrame, plates: Sequence[str]
) -> pd.DataFrame:
    """Read and validate a well-level profile table for the plates of a run.

    Parameters
    ----------
    path
        Parquet (``.parquet``/``.pq``) or CSV/TSV (``.csv``, ``.tsv``, optionally
        compressed, e.g. ``.csv.gz``) with ``Metadata_Plate``, ``Metadata_Well`` and numeric
        feature columns (every column not starting with ``Metadata_``).
    metadata
        The run's validated well metadata table (``paintssl.inputs.read_metadata``); the
        source of truth for annotations, so the table's other ``Metadata_*`` columns are
        dropped.
    plates
        The run's (evaluation) plates: each must be in the table; rows of other plates are
        ignored.

    Returns
    -------
    pandas.DataFrame
        ``Metadata_Plate``, ``Metadata_Well`` (str) and the feature columns (float64), rows
        of ``plates`` sorted by plate and well.
    """
    path = Path(path)
    table = _read(path)
    keys = list(ANNOTATION_KEYS)
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; its Metadata_* columns are "
            f"{listed(metadata_columns(table)) or 'none'}. Rename the plate and well columns "
            f"(e.g. Metadata_plate -> Metadata_Plate) or add them"
        )
    for key in keys:
        table[key] = table[key].astype("str").where(table[key].notna()).str.strip()
    blank = table.index[table[keys].isna().any(axis=1) | (table[keys] == "").any(axis=1)]
    if len(blank):
        raise InputError(
            f"{path}: Metadata_Plate or Metadata_Well is empty on {row_names(blank, path)}; "
            "fill it in"
        )
    absent = [p for p in plates if p not in set(table[PLATE])]
    if absent:
        raise InputError(
            f"{path}: no wells for plate(s) {listed(absent)} of the run (the table has "
            f"{listed(sorted(set(table[PLATE])))}); add their profiles to the table or remove "
            f"the plate(s) from the plates sheet (or mark them split: train)"
        )
    others = sorted(set(table[PLATE]) - set(plates))
    if others:
        log.info("%s: ignoring %d plates not evaluated in this run", path, len(others))
    table = table[table[PLATE].isin(list(plates))]
    require_unique(table, keys, path)
    known = pd.MultiIndex.from_frame(metadata[keys].astype(str))
    orphan = table.index[~pd.MultiIndex.from_frame(table[keys]).isin(known)]
    if len(orphan):
        wells = [f"{p}/{w}" for p, w in table.loc[orphan, keys].itertuples(index=False)]
        raise InputError(
            f"{path}: {len(orphan)} well(s) are not in the metadata table, e.g. "
            f"{listed(wells)} on {row_names(orphan, path)}; add them to the metadata table or "
            f"drop them from the profiles (well names must match, e.g. A01 vs A1)"
        )
    dropped = [c for c in metadata_columns(table) if c not in keys]
    if dropped:
        log.info(
            "%s: dropping %d Metadata_* columns (annotations come from the metadata table): %s",
            path,
            len(dropped),
            listed(dropped),
        )
    table = table.drop(columns=dropped)
    _check_features(table, path)
    features = feature_columns(table)
    out = table[keys].join(table[features].astype(np.float64))
    return out.sort_values(keys, ignore_index=True)


def external_wells(profiles: pd.DataFrame, plate: str, source: str, batch: str) -> pd.DataFrame:
    """One plate of a validated table as well embeddings (the columns of ``aggregate_wells``)."""
    wells = profiles[profiles[PLATE] == plate].reset_index(drop=True)
    features = feature_columns(wells)
    keys = pd.DataFrame({SOURCE: source, BATCH: batch, PLATE: plate, WELL: wells[WELL]})
    counts = pd.DataFrame(np.nan, index=wells.index, columns=list(COUNT_COLUMNS))
    return pd.concat([keys[list(WELL_KEYS)], counts, wells[features]], axis=1)


def import_external_profiles(
    profiles: str | Path,
    metadata: str | Path,
    plates: Sequence[Mapping[str, str]],
    outs: Sequence[str | Path],
) -> None:
    """Validate the table of an ``external`` model and write per-plate well embeddings.

    Parameters
    ----------
    profiles
        The user's well-level table (:func:`read_external_profiles`).
    metadata
        ``results/images/metadata.parquet``, the validated well metadata.
    plates
        One ``{"plate", "source", "batch"}`` mapping per evaluation plate (the plates sheet).
    outs
        ``results/embeddings/{model}/{plate}.parquet``, in the order of ``plates``.
    """
    names = [p["plate"] for p in plates]
    table = read_external_profiles(profiles, pd.read_parquet(metadata), names)
    for plate, out in zip(plates, outs, strict=True):
        wells = external_wells(table, plate["plate"], plate["source"], plate["batch"])
        n_features = len(feature_columns(wells))
        log.info("%s: %d wells, %d features", plate["plate"], len(wells), n_features)
        write_parquet(wells, out)
