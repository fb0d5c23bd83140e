"""The ground-truth latent phenotype as well features: the ceiling model ``oracle`` (no torch).

For the built-in synthetic dataset only: ``resources/synthetic/truth.parquet``
(:func:`paintssl.synthetic.layout.render_metadata`) holds, per (plate, well), the latent
vector the well's images were rendered from (``truth_0000 ...``, ordered as
``paintssl.synthetic.config.LATENT_NAMES``; the technical effects of the rendering are not in
it). Written in the well-table contract of every model (:func:`paintssl.embed.wells.
manifest_wells`: the manifest's wells and counts, ``Metadata_n_tiles`` = 0, float32 features
named as in the truth table), it runs through the same profile chain and evaluation: the
best any model of the images could do, beside ``random_features`` (chance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.embed.wells import manifest_wells
from paintssl.inputs import InputError, listed
from paintssl.synthetic.layout import TRUTH_PREFIX
from paintssl.tables import PLATE, WELL, write_parquet

FIX = (
    "the oracle model exists only for the built-in synthetic dataset (config `plates: null`); "
    "its truth table is resources/synthetic/truth.parquet, written by rule "
    "render_synthetic_metadata with the same `synthetic` settings as the plates (delete it "
    "to have it rendered again)"
)


def truth_columns(truth: pd.DataFrame) -> list[str]:
    """Return the ``truth_*`` columns of a ground-truth table, in table order."""
    return [c for c in truth.columns if str(c).startswith(TRUTH_PREFIX)]


def oracle_wells(
    truth: pd.DataFrame, sites: pd.DataFrame, source: str | Path = "truth table"
) -> pd.DataFrame:
    """Well rows of one plate's manifest with the ground-truth latent as features.

    Parameters
    ----------
    truth
        The ground-truth table: ``Metadata_Plate``, ``Metadata_Well`` and ``truth_0000 ...``
        (any plates; other columns are ignored).
    sites
        The plate's manifest (one row per site: ``SITE_KEYS`` and ``cell_count``).
    source
        The truth table's file, named in error messages.

    Returns
    -------
    pandas.DataFrame
        :func:`~paintssl.embed.wells.manifest_wells` of ``sites`` (one row per well, sorted by
        ``WELL_KEYS``) and the well's ``truth_*`` values as float32.

    Raises
    ------
    InputError
        When the truth table lacks the key columns, has no ``truth_*`` column, lists a well
        twice, has non-finite values for the plate, or lacks a well of the manifest.
    """
    missing = [c for c in (PLATE, WELL) if c not in truth.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}; {FIX}")
    features = truth_columns(truth)
    if not features:
        raise InputError(
            f"{source}: no {TRUTH_PREFIX}* columns, so it is not a ground-truth table; {FIX}"
        )
    wells = manifest_wells(sites)
    plate = str(wells[PLATE].iloc[0])
    rows = truth.loc[truth[PLATE].astype(str) == plate, [PLATE, WELL, *features]]
    rows = rows.astype({PLATE: str, WELL: str})
    twice = rows.loc[rows.duplicated([PLATE, WELL]), WELL]
    if len(twice):
        raise InputError(f"{source}: plate {plate} lists well(s) {_wells(twice)} twice; {FIX}")
    joined = wells.merge(rows, on=[PLATE, WELL], how="left", indicator=True)
    absent = joined.loc[joined.pop("_merge") == "left_only", WELL]
    if len(absent):
        raise InputError(
            f"{source}: no ground truth for well(s) {_wells(absent)} of plate {plate} "
            f"(in its manifest); {FIX}"
        )
    values = joined[features].to_numpy(dtype=np.float32)
    if not np.isfinite(values).all():
        bad = joined.loc[~np.isfinite(values).all(axis=1), WELL]
        raise InputError(f"{source}: non-finite ground truth for well(s) {_wells(bad)} of "
                         f"plate {plate}; {FIX}")  # fmt: skip
    return pd.concat([wells, pd.DataFrame(values, columns=features)], axis=1)


def _wells(wells: pd.Series) -> str:
    """Name the distinct wells, sorted (``inputs.listed``: a few, then how many more)."""
    return listed(sorted(map(str, wells.unique())))


def embed_oracle(truth: str | Path, manifest: str | Path, out: str | Path) -> None:
    """Write the ``oracle`` well features of one plate (:func:`oracle_wells`)."""
    sites = pd.read_parquet(manifest)
    if sites.empty:
        raise ValueError(f"{manifest}: no sites")
    write_parquet(oracle_wells(pd.read_parquet(truth), sites, source=truth), out)
