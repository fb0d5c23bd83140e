"""Layout of the synthetic dataset: plates, perturbations, well positions, metadata tables."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.synthetic.config import (
    DMSO_ID,
    LATENT_NAMES,
    POSCON_ID,
    POSCON_LATENT,
    SyntheticConfig,
    rng_for,
)
from paintssl.tables import PLATE, WELL, write_parquet

TRUTH_PREFIX = "truth_"
"""Prefix of the ground-truth latent columns of ``truth.parquet`` (``truth_0000 ...``)."""


def plates_table(cfg: SyntheticConfig) -> pd.DataFrame:
    """Plate, batch, source, cell line and split (train/eval) of every plate, sorted by plate."""
    rows = []
    for i, line in enumerate(cfg.cell_lines):
        for j in range(cfg.sources_per_cell_line):
            k = i * cfg.sources_per_cell_line + j + 1
            for b, p in itertools.product(
                range(1, cfg.batches_per_source + 1), range(1, cfg.plates_per_batch + 1)
            ):
                rows.append(
                    {
                        "plate": f"src{k:02d}_b{b:02d}_p{p:02d}",
                        "batch": f"source_{k}_batch_{b}",
                        "source": f"source_{k}",
                        "cell_line": line,
                        "split": _split(cfg, p),
                    }
                )
    return pd.DataFrame(rows).sort_values("plate", ignore_index=True)


def _split(cfg: SyntheticConfig, plate_number: int) -> str | None:
    """``eval`` for the last ``eval_plates_per_batch`` plates of a batch, else ``train``."""
    if not cfg.eval_plates_per_batch:
        return None
    held_out = plate_number > cfg.plates_per_batch - cfg.eval_plates_per_batch
    return "eval" if held_out else "train"


def plate_sheet(cfg: SyntheticConfig, root: str | Path) -> pd.DataFrame:
    """Plates sheet (``plate, batch, source, split, load_data``) of the dataset under ``root``.

    Cheap: renders nothing and touches no file.
    """
    sheet = plates_table(cfg).drop(columns="cell_line")
    sheet["load_data"] = [str(Path(root) / p / "load_data.csv") for p in sheet["plate"]]
    return sheet


def plate_row(cfg: SyntheticConfig, plate: str) -> pd.Series:
    """Return the plate, batch, source and cell line of ``plate``; unknown names list the valid."""
    plates = plates_table(cfg)
    match = plates[plates["plate"] == plate]
    if match.empty:
        raise ValueError(f"unknown synthetic plate {plate!r}; valid: {', '.join(plates['plate'])}")
    return match.iloc[0]


def _well_names(plate_format: int) -> list[str]:
    n_rows, n_cols = (8, 12) if plate_format == 96 else (16, 24)
    return [f"{chr(65 + r)}{c + 1:02d}" for r in range(n_rows) for c in range(n_cols)]


def _edge_weight(plate_format: int) -> np.ndarray:
    """1 on the outer ring of wells, 0.4 on the next ring, 0 inside."""
    n_rows, n_cols = (8, 12) if plate_format == 96 else (16, 24)
    r, c = np.divmod(np.arange(plate_format), n_cols)
    ring = np.minimum.reduce([r, c, n_rows - 1 - r, n_cols - 1 - c])
    return np.select([ring == 0, ring == 1], [1.0, 0.4], 0.0)


def perturbations(cfg: SyntheticConfig) -> pd.DataFrame:
    """One row per perturbation (same ids in every cell line); column ``latent`` per cell line."""
    d = len(LATENT_NAMES)
    rng = rng_for(cfg, "perturbations")
    spec = cfg.cell_line_specificity
    mix = 1.0 / np.sqrt(1.0 + spec**2)
    line_rngs = {line: rng_for(cfg, "perturbations", line) for line in cfg.cell_lines}

    def draw(scale: float | np.ndarray, n: int) -> dict[str, np.ndarray]:
        """Shared plus cell-line-specific normal draws, ``n`` x ``d``, per cell line."""
        shared = rng.normal(size=(n, d))
        scale = np.reshape(scale, (-1, 1))
        return {
            ln: scale * mix * (shared + spec * g.normal(size=(n, d))) for ln, g in line_rngs.items()
        }

    strength = np.exp(rng.normal(0.0, 0.4, cfg.n_targets))
    targets = draw(cfg.target_effect * strength, cfg.n_targets)
    families = draw(cfg.family_effect, cfg.n_gene_families)
    n_single = cfg.n_targets * cfg.compounds_per_target
    n_cpd = n_single + cfg.n_dual_target_compounds
    n_orf = cfg.n_gene_families * cfg.genes_per_family
    cpd_part = draw(cfg.compound_effect, n_cpd)
    orf_part = draw(cfg.gene_effect, n_orf)
    single = np.repeat(np.arange(cfg.n_targets), cfg.compounds_per_target)
    duals = np.array(
        [rng.choice(cfg.n_targets, 2, replace=False) for _ in range(cfg.n_dual_target_compounds)]
    )
    fam = np.repeat(np.arange(cfg.n_gene_families), cfg.genes_per_family)

    rows = [dict(jcp=DMSO_ID, pert_type="negcon"), dict(jcp=POSCON_ID, pert_type="poscon")]
    rows += [
        dict(jcp=f"JCP2022_1{i + 1:05d}", pert_type="trt", target=f"TARGET{t + 1:02d}")
        for i, t in enumerate(single)
    ]
    rows += [
        dict(jcp=f"JCP2022_1{n_single + i + 1:05d}", pert_type="trt",
             target="|".join(f"TARGET{t + 1:02d}" for t in sorted(pair)))
        for i, pair in enumerate(duals)
    ]  # fmt: skip
    rows += [
        dict(jcp=f"JCP2022_9{i + 1:05d}", pert_type="trt", gene_family=f"FAM{f + 1:02d}",
             gene=f"FAM{f + 1:02d}G{i % cfg.genes_per_family + 1:02d}")
        for i, f in enumerate(fam)
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=["jcp", "pert_type", "target", "gene", "gene_family"])
    for line in cfg.cell_lines:
        t = targets[line]
        cpd = (
            np.concatenate([t[single], (t[duals[:, 0]] + t[duals[:, 1]]) / np.sqrt(2)])
            if len(duals)
            else t[single]
        )
        latent = np.concatenate(
            [np.zeros((1, d)), cfg.poscon_effect * POSCON_LATENT[None], cpd + cpd_part[line],
             families[line][fam] + orf_part[line]]
        )  # fmt: skip
        table[f"latent_{line}"] = list(latent)
    return table


def plate_layout(cfg: SyntheticConfig, plate: str) -> pd.DataFrame:
    """Wells of one plate: perturbation row, edge weight and the well's latent phenotype."""
    line = plate_row(cfg, plate)["cell_line"]
    perts = perturbations(cfg)
    n_trt = len(perts) - 2
    content = np.concatenate(
        [np.zeros(cfg.plate_format - n_trt - cfg.n_poscon_wells, int),
         np.ones(cfg.n_poscon_wells, int), np.arange(2, n_trt + 2)]
    )  # fmt: skip
    rng = rng_for(cfg, "layout", plate)
    content = content[rng.permutation(cfg.plate_format)]
    latent = np.stack(perts[f"latent_{line}"].to_numpy()[content])
    latent = latent + cfg.well_noise * rng.normal(size=latent.shape)
    layout = perts.drop(columns=[c for c in perts if c.startswith("latent_")]).iloc[content]
    layout = layout.reset_index(drop=True)
    layout.insert(0, "well", _well_names(cfg.plate_format))
    layout["cell_line"] = line
    layout["edge"] = _edge_weight(cfg.plate_format)
    layout["latent"] = list(latent)
    return layout


def render_metadata(cfg: SyntheticConfig, metadata_out: str | Path, truth_out: str | Path) -> None:
    """Write the well metadata table and the ground-truth latent phenotypes (Parquet).

    ``metadata_out`` has one row per (plate, well) with ``Metadata_Plate, Metadata_Well,
    Metadata_JCP2022, Metadata_pert_type, Metadata_target, Metadata_gene, Metadata_gene_family,
    Metadata_cell_line``; ``truth_out`` has ``Metadata_Plate, Metadata_Well, truth_0000 ...``
    (the latent used for rendering, ordered as ``LATENT_NAMES``).
    """
    layouts = []
    for plate in plates_table(cfg)["plate"]:
        layouts.append(plate_layout(cfg, plate).assign(plate=plate))
    wells = pd.concat(layouts, ignore_index=True)
    names = {"plate": "Plate", "well": "Well", "jcp": "JCP2022", "pert_type": "pert_type",
             "target": "target", "gene": "gene", "gene_family": "gene_family",
             "cell_line": "cell_line"}  # fmt: skip
    meta = wells[list(names)].rename(columns={k: f"Metadata_{v}" for k, v in names.items()})
    truth = pd.DataFrame(
        np.stack(wells["latent"].to_numpy()),
        columns=[f"{TRUTH_PREFIX}{i:04d}" for i in range(len(LATENT_NAMES))],
    )
    truth.insert(0, WELL, meta[WELL])
    truth.insert(0, PLATE, meta[PLATE])
    write_parquet(meta, metadata_out)
    write_parquet(truth, truth_out)
