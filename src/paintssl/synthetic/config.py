"""Built-in synthetic JUMP-like Cell Painting dataset with known ground truth.

Plates follow the JUMP hierarchy (cell line > source > batch > plate > well > site). Every
perturbation of a cell line is on every plate of that cell line at a shuffled well position:
DMSO negative controls, one strong positive control, compounds grouped by target (shared target
phenotype plus a compound-specific part; a few compounds have two targets) and ORF genes grouped
in gene families. A well's phenotype is a latent vector (``LATENT_NAMES``, written as
``truth_0000 ...``) that sets cell and nucleus size and shape, channel intensities, textures,
mitochondrial fragmentation and cell count; cells vary around it. Technical effects (per-source
optics, gains, noise and channel order; per-batch drift; per-plate illumination field; well-edge
effects) act on the rendered images only and are not part of the ground truth.

Everything derives from ``SyntheticConfig.seed`` and the names of plates, sources and batches, so
one plate renders independently of the others and identically on every run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

LATENT_NAMES: tuple[str, ...] = (
    "nucleus_size", "nucleus_elongation", "cell_size", "cell_shape",
    "dna_intensity", "er_intensity", "rna_intensity", "agp_intensity", "mito_intensity",
    "dna_texture", "er_texture", "nucleoli", "agp_edge", "mito_fragmentation", "mito_spread",
    "cell_count",
)  # fmt: skip
"""Meaning of the ground-truth columns ``truth_0000 ...``, in order (0 = DMSO-like)."""

LATENT_GAIN = np.array(
    [0.12, 0.3, 0.12, 0.4, 0.2, 0.2, 0.2, 0.2, 0.2, 0.35, 0.35, 0.35, 0.35, 0.35, 0.3, 0.2]
)  # log-scale change of each rendering parameter per latent unit
POSCON_LATENT = np.array([5, 2, 3, 2, 4, 0, 0, -3, -2, 4, 0, -4, 2, 5, -3, -5])
DMSO_ID = "JCP2022_033924"  # the real JUMP id of DMSO
POSCON_ID = "JCP2022_000001"
BASE_SITE = 224  # cell density is defined per 224 x 224 pixels


@dataclass(frozen=True)
class Morphology:
    """Base morphology of a cell line in pixels at the reference optics."""

    nucleus_radius: float
    nucleus_elongation: float
    cell_radius: float
    cell_elongation: float
    irregularity: float
    density: float  # relative to SyntheticConfig.cells_per_site


MORPHOLOGIES: dict[str, Morphology] = {
    "U2OS": Morphology(10.0, 1.35, 24.0, 1.5, 0.2, 0.8),
    "A549": Morphology(8.5, 1.1, 18.0, 1.15, 0.1, 1.25),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Layout, biology and technical effects of the synthetic dataset (all keys optional).

    Attributes
    ----------
    seed : everything (layout, phenotypes, pixels) derives from it and the plate names.
    cell_lines : names from ``MORPHOLOGIES`` (U2OS: large, flat, elongated; A549: small, round).
    sources_per_cell_line, batches_per_source, plates_per_batch : plate hierarchy; sources
        are ``source_1 ...``, numbered across cell lines.
    eval_plates_per_batch : plates of every batch (the last ones) held out of pretraining and
        used for evaluation (``split`` column of the plates sheet); 0 = every plate in both.
        Fewer than ``plates_per_batch``, so that every batch, source and cell line is in both.
    plate_format : 96 or 384 wells; wells not used by treatments and poscons hold DMSO.
    sites_per_well, site_size : fields of view per well and their side in pixels (JUMP: 1080);
        cell density per pixel is the same at every size.
    n_targets, compounds_per_target : single-target compounds, grouped by target.
    n_dual_target_compounds : extra compounds whose phenotype mixes two targets.
    n_gene_families, genes_per_family : ORF genes, grouped by family.
    n_negcon_wells, n_poscon_wells : DMSO (at least) and positive-control wells per plate.
    cells_per_site : expected cells per 224 x 224 pixels, times the cell line's density.
    target_effect, compound_effect, family_effect, gene_effect : standard deviation (latent
        units per dimension) of the shared target/family phenotype and the per-compound/gene part.
    cell_line_specificity : weight of the cell-line-specific part of every phenotype.
    poscon_effect : scale of the fixed positive-control phenotype.
    well_noise : biological well-to-well latent noise (part of the ground truth).
    cell_variability : scale of cell-to-cell variation around the well phenotype.
    optics_strength : spread of blur and pixel size between sources.
    batch_drift : log-sd of the per-batch, per-channel intensity drift.
    illumination_strength : depth of the per-plate vignetting field.
    edge_effect : intensity gain and cell loss in outer wells (0.4 of it in the second ring).
    """

    seed: int = 0
    cell_lines: tuple[str, ...] = ("U2OS", "A549")
    sources_per_cell_line: int = 2
    batches_per_source: int = 2
    plates_per_batch: int = 2
    eval_plates_per_batch: int = 1
    plate_format: int = 96
    sites_per_well: int = 2
    site_size: int = 224
    n_targets: int = 10
    compounds_per_target: int = 3
    n_dual_target_compounds: int = 4
    n_gene_families: int = 8
    genes_per_family: int = 4
    n_negcon_wells: int = 16
    n_poscon_wells: int = 4
    cells_per_site: float = 15.0
    target_effect: float = 1.0
    compound_effect: float = 0.6
    family_effect: float = 1.0
    gene_effect: float = 0.6
    cell_line_specificity: float = 0.5
    poscon_effect: float = 1.0
    well_noise: float = 0.3
    cell_variability: float = 1.0
    optics_strength: float = 1.0
    batch_drift: float = 0.1
    illumination_strength: float = 0.3
    edge_effect: float = 0.15

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell_lines", tuple(self.cell_lines))
        if self.plate_format not in (96, 384):
            raise ValueError(f"synthetic.plate_format must be 96 or 384, got {self.plate_format}")
        unknown = [c for c in self.cell_lines if c not in MORPHOLOGIES]
        if unknown or not self.cell_lines or len(set(self.cell_lines)) < len(self.cell_lines):
            raise ValueError(
                f"synthetic.cell_lines must be distinct names from {sorted(MORPHOLOGIES)}, "
                f"got {list(self.cell_lines)}"
            )
        counts = ("sources_per_cell_line", "batches_per_source", "plates_per_batch",
                  "sites_per_well", "n_targets", "compounds_per_target", "n_gene_families",
                  "genes_per_family", "n_negcon_wells", "n_poscon_wells")  # fmt: skip
        for key in counts:
            if getattr(self, key) < 1:
                raise ValueError(f"synthetic.{key} must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.eval_plates_per_batch < self.plates_per_batch:
            raise ValueError(
                f"synthetic.eval_plates_per_batch must be >= 0 and < plates_per_batch "
                f"({self.plates_per_batch}) so that every batch is in both splits, got "
                f"{self.eval_plates_per_batch}; set it to 0 to train and evaluate on every plate"
            )
        if self.site_size < 32:
            raise ValueError(f"synthetic.site_size must be >= 32 pixels, got {self.site_size}")
        if self.n_dual_target_compounds < 0 or (
            self.n_dual_target_compounds and self.n_targets < 2
        ):
            raise ValueError("synthetic.n_dual_target_compounds needs >= 0 and n_targets >= 2")
        if self.n_wells_used > self.plate_format:
            raise ValueError(
                f"synthetic layout needs {self.n_wells_used} wells but plate_format is "
                f"{self.plate_format}: use 384 or fewer targets, compounds, genes or controls"
            )

    @property
    def n_wells_used(self) -> int:
        """Wells holding treatments and the minimum numbers of controls."""
        n_trt = (
            self.n_targets * self.compounds_per_target
            + self.n_dual_target_compounds
            + self.n_gene_families * self.genes_per_family
        )
        return n_trt + self.n_negcon_wells + self.n_poscon_wells


def stable_hash(name: str) -> int:
    """64-bit hash of ``name`` that, unlike ``hash``, is the same in every process."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def rng_for(cfg: SyntheticConfig, *keys: str | int) -> np.random.Generator:
    """Return generator seeded by the dataset seed and ``keys`` (names are hashed stably)."""
    words = [k if isinstance(k, int) else stable_hash(k) for k in keys]
    return np.random.default_rng([cfg.seed, *words])
