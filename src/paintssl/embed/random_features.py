"""Seeded Gaussian well features: the chance-level model ``random_features`` (no torch).

Its per-plate well tables have the columns of :func:`paintssl.embed.wells.aggregate_wells`
(``WELL_KEYS``, ``Metadata_n_sites``, ``Metadata_n_tiles``, ``Metadata_cell_count`` and
``emb_0000 ...``) so they run through the same profile chain and evaluation as any model.
The counts come from the plate's manifest; ``Metadata_n_tiles`` is 0 (no tile is embedded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.embed.wells import embedding_columns, manifest_wells
from paintssl.tables import PLATE, write_parquet


def plate_rng(seed: int, plate: str) -> np.random.Generator:
    """Return a generator seeded by ``(seed, plate)``: deterministic, independent per plate."""
    name = plate.encode()
    return np.random.default_rng(np.random.SeedSequence([seed, len(name), *name]))


def random_well_features(sites: pd.DataFrame, dim: int, seed: int = 0) -> pd.DataFrame:
    """Well rows of one plate's manifest with N(0, 1) features seeded by ``(seed, plate)``.

    Parameters
    ----------
    sites
        The plate's manifest (one row per site: ``SITE_KEYS`` and ``cell_count``).
    dim
        Number of feature columns.
    seed
        The workflow seed.

    Returns
    -------
    pandas.DataFrame
        One row per well, sorted by ``WELL_KEYS``; float32 features drawn in that order.
    """
    wells = manifest_wells(sites)
    rng = plate_rng(seed, str(wells[PLATE].iloc[0]))
    noise = rng.standard_normal((len(wells), dim), dtype=np.float32)
    return pd.concat([wells, pd.DataFrame(noise, columns=embedding_columns(dim))], axis=1)


def embed_random_features(manifest: str | Path, out: str | Path, dim: int, seed: int = 0) -> None:
    """Write the ``random_features`` well embeddings of one plate (:func:`random_well_features`)."""
    sites = pd.read_parquet(manifest)
    if sites.empty:
        raise ValueError(f"{manifest}: no sites")
    write_parquet(random_well_features(sites, dim, seed), out)
