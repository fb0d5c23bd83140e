"""Planted-structure profile tables whose metric values are known (tests and benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.tables import LEVEL_KEYS, feature_columns

ANNOTATIONS = [
    "Metadata_pert_type",
    "Metadata_target",
    "Metadata_gene",
    "Metadata_gene_family",
]


@dataclass(frozen=True)
class PlantedDesign:
    """Sizes and effect strengths of a planted well-profile table.

    Each perturbation has its own direction (``perturbation_effect``) plus the direction
    of its target or gene family (``group_effect``); each batch adds ``batch_effect``;
    every well adds unit Gaussian noise. Compounds share targets in groups of
    ``per_group``; genes share families in groups of ``per_group``.
    """

    cell_lines: tuple[str, ...] = ("U2OS", "A549")
    n_sources: int = 2
    batches_per_source: int = 2
    wells_per_batch: int = 2
    n_compounds: int = 12
    n_genes: int = 12
    per_group: int = 4
    n_negcon_wells: int = 4
    n_features: int = 32
    perturbation_effect: float = 3.0
    group_effect: float = 2.0
    batch_effect: float = 0.0


def perturbation_table(design: PlantedDesign) -> pd.DataFrame:
    """One row per perturbation: compounds with targets, genes with families, one negcon."""
    compounds = pd.DataFrame(
        {
            "Metadata_JCP2022": [f"JCP_C{i:04d}" for i in range(design.n_compounds)],
            "Metadata_pert_type": "trt",
            "Metadata_target": [f"T{i // design.per_group}" for i in range(design.n_compounds)],
            "Metadata_gene": pd.NA,
            "Metadata_gene_family": pd.NA,
        }
    )
    genes = pd.DataFrame(
        {
            "Metadata_JCP2022": [f"JCP_G{i:04d}" for i in range(design.n_genes)],
            "Metadata_pert_type": "trt",
            "Metadata_target": pd.NA,
            "Metadata_gene": [f"GENE{i}" for i in range(design.n_genes)],
            "Metadata_gene_family": [f"F{i // design.per_group}" for i in range(design.n_genes)],
        }
    )
    negcon = pd.DataFrame(
        {"Metadata_JCP2022": ["JCP_DMSO"], "Metadata_pert_type": "negcon"}
    ).reindex(columns=compounds.columns)
    return pd.concat([compounds, genes, negcon], ignore_index=True).astype("string")


def well_layout(design: PlantedDesign) -> pd.DataFrame:
    """Metadata of every well: cell line x source x batch x perturbation x replicate."""
    perts = perturbation_table(design)
    reps = np.where(perts["Metadata_pert_type"] == "negcon", design.n_negcon_wells, 1)
    reps = reps * design.wells_per_batch
    per_batch = perts.loc[perts.index.repeat(reps)].reset_index(drop=True)
    parts = []
    for cell_line in design.cell_lines:
        for s in range(design.n_sources):
            for b in range(design.batches_per_source):
                batch = f"{cell_line}_S{s}_B{b}"
                parts.append(
                    per_batch.assign(
                        Metadata_cell_line=cell_line,
                        Metadata_Source=f"source_{s}",
                        Metadata_Batch=batch,
                        Metadata_Plate=f"{batch}_P0",
                    )
                )
    wells = pd.concat(parts, ignore_index=True)
    wells["Metadata_Well"] = [f"W{i:05d}" for i in range(len(wells))]
    return wells


def planted_wells(design: PlantedDesign, seed: int = 0) -> pd.DataFrame:
    """Well-level profiles (``Metadata_*`` + ``f_0000 ...``) with the planted structure.

    Negative controls carry only the batch effect and noise.
    """
    rng = np.random.default_rng(seed)
    wells = well_layout(design)
    n = design.n_features

    def directions(keys: pd.Series, scale: float) -> np.ndarray:
        codes, uniques = pd.factorize(keys.fillna("__none__"), sort=True)
        table = rng.standard_normal((len(uniques), n)) * scale
        table[uniques == "__none__"] = 0.0
        return table[codes]

    is_trt = wells["Metadata_pert_type"] == "trt"
    groups = wells["Metadata_target"].fillna(wells["Metadata_gene_family"])
    feats = (
        directions(wells["Metadata_JCP2022"].where(is_trt), design.perturbation_effect)
        + directions(groups, design.group_effect)
        + directions(wells["Metadata_Batch"], design.batch_effect)
        + rng.standard_normal((len(wells), n))
    )
    wells["Metadata_cell_count"] = rng.integers(100, 400, len(wells))
    columns = {f"f_{j:04d}": feats[:, j] for j in range(n)}
    return pd.concat([wells, pd.DataFrame(columns)], axis=1)


def aggregate_level(wells: pd.DataFrame, level: str) -> pd.DataFrame:
    """Mean profile per group of ``LEVEL_KEYS[level]``, keeping the annotations."""
    keys = list(LEVEL_KEYS[level])
    features = feature_columns(wells)
    grouped = wells.groupby(keys, sort=True, dropna=False)
    out = grouped[features].mean()
    out.insert(0, "Metadata_n_wells", grouped.size())
    annotations = grouped[ANNOTATIONS].first()
    return pd.concat([annotations, out], axis=1).reset_index()


def write_planted_profiles(
    design: PlantedDesign, folder: str | Path, seed: int = 0
) -> dict[str, Path]:
    """Write ``{level}.parquet`` for well, batch, source and consensus; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wells = planted_wells(design, seed)
    tables = {"well": wells} | {lvl: aggregate_level(wells, lvl) for lvl in LEVEL_KEYS}
    paths = {}
    for level, table in tables.items():
        paths[level] = folder / f"{level}.parquet"
        table.to_parquet(paths[level], index=False)
    return paths
