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
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage

from paintssl import CHANNELS

LATENT_NAMES: tuple[str, ...] = (
    "nucleus_size", "nucleus_elongation", "cell_size", "cell_shape",
    "dna_intensity", "er_intensity", "rna_intensity", "agp_intensity", "mito_intensity",
    "dna_texture", "er_texture", "nucleoli", "agp_edge", "mito_fragmentation", "mito_spread",
    "cell_count",
)  # fmt: skip
"""Meaning of the ground-truth columns ``truth_0000 ...``, in order (0 = DMSO-like)."""

_LATENT_GAIN = np.array(
    [0.12, 0.3, 0.12, 0.4, 0.2, 0.2, 0.2, 0.2, 0.2, 0.35, 0.35, 0.35, 0.35, 0.35, 0.3, 0.2]
)  # log-scale change of each rendering parameter per latent unit
_POSCON_LATENT = np.array([5, 2, 3, 2, 4, 0, 0, -3, -2, 4, 0, -4, 2, 5, -3, -5])
DMSO_ID = "JCP2022_033924"  # the real JUMP id of DMSO
POSCON_ID = "JCP2022_000001"
BASE_SITE = 224  # cell density is defined per 224 x 224 pixels


@dataclass(frozen=True)
class _Morphology:
    """Base morphology of a cell line in pixels at the reference optics."""

    nucleus_radius: float
    nucleus_elongation: float
    cell_radius: float
    cell_elongation: float
    irregularity: float
    density: float  # relative to SyntheticConfig.cells_per_site


MORPHOLOGIES: dict[str, _Morphology] = {
    "U2OS": _Morphology(10.0, 1.35, 24.0, 1.5, 0.2, 0.8),
    "A549": _Morphology(8.5, 1.1, 18.0, 1.15, 0.1, 1.25),
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


def _rng(cfg: SyntheticConfig, *keys: str | int) -> np.random.Generator:
    words = [k if isinstance(k, int) else stable_hash(k) for k in keys]
    return np.random.default_rng([cfg.seed, *words])


# --------------------------------------------------------------------------- layout and tables


def _plates(cfg: SyntheticConfig) -> pd.DataFrame:
    """Plate, batch, source and cell line of every plate, sorted by plate."""
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
                    }
                )
    return pd.DataFrame(rows).sort_values("plate", ignore_index=True)


def plate_sheet(cfg: SyntheticConfig, root: str | Path) -> pd.DataFrame:
    """Plates sheet (``plate, batch, source, load_data``) of the dataset rendered under ``root``.

    Cheap: renders nothing and touches no file.
    """
    sheet = _plates(cfg).drop(columns="cell_line")
    sheet["load_data"] = [str(Path(root) / p / "load_data.csv") for p in sheet["plate"]]
    return sheet


def _plate_row(cfg: SyntheticConfig, plate: str) -> pd.Series:
    plates = _plates(cfg)
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


def _perturbations(cfg: SyntheticConfig) -> pd.DataFrame:
    """One row per perturbation (same ids in every cell line); column ``latent`` per cell line."""
    d = len(LATENT_NAMES)
    rng = _rng(cfg, "perturbations")
    spec = cfg.cell_line_specificity
    mix = 1.0 / np.sqrt(1.0 + spec**2)
    line_rngs = {line: _rng(cfg, "perturbations", line) for line in cfg.cell_lines}

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
            [np.zeros((1, d)), cfg.poscon_effect * _POSCON_LATENT[None], cpd + cpd_part[line],
             families[line][fam] + orf_part[line]]
        )  # fmt: skip
        table[f"latent_{line}"] = list(latent)
    return table


def _plate_layout(cfg: SyntheticConfig, plate: str) -> pd.DataFrame:
    """Wells of one plate: perturbation row, edge weight and the well's latent phenotype."""
    line = _plate_row(cfg, plate)["cell_line"]
    perts = _perturbations(cfg)
    n_trt = len(perts) - 2
    content = np.concatenate(
        [np.zeros(cfg.plate_format - n_trt - cfg.n_poscon_wells, int),
         np.ones(cfg.n_poscon_wells, int), np.arange(2, n_trt + 2)]
    )  # fmt: skip
    rng = _rng(cfg, "layout", plate)
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
    for plate in _plates(cfg)["plate"]:
        layouts.append(_plate_layout(cfg, plate).assign(plate=plate))
    wells = pd.concat(layouts, ignore_index=True)
    names = {"plate": "Plate", "well": "Well", "jcp": "JCP2022", "pert_type": "pert_type",
             "target": "target", "gene": "gene", "gene_family": "gene_family",
             "cell_line": "cell_line"}  # fmt: skip
    meta = wells[list(names)].rename(columns={k: f"Metadata_{v}" for k, v in names.items()})
    truth = pd.DataFrame(
        np.stack(wells["latent"].to_numpy()),
        columns=[f"truth_{i:04d}" for i in range(len(LATENT_NAMES))],
    )
    truth.insert(0, "Metadata_Well", meta["Metadata_Well"])
    truth.insert(0, "Metadata_Plate", meta["Metadata_Plate"])
    for table, out in ((meta, metadata_out), (truth, truth_out)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out, index=False)


# --------------------------------------------------------------------------- technical effects


@dataclass(frozen=True)
class _Optics:
    """Per-source microscope: channel order and file naming, gains, blur, noise, pixel size."""

    channel_order: tuple[str, ...]
    name_style: int
    gain: np.ndarray
    background: np.ndarray
    blur: float
    snr: float
    pixel_scale: float


def _optics(cfg: SyntheticConfig, source: str) -> _Optics:
    k = int(source.removeprefix("source_"))
    orders = list(itertools.permutations(CHANNELS))[1:]  # never the canonical order
    order = orders[_rng(cfg, "channel_orders").permutation(len(orders))[(k - 1) % len(orders)]]
    rng = _rng(cfg, "optics", source)
    level = np.exp(rng.uniform(np.log(600.0), np.log(12000.0)))
    strength = cfg.optics_strength
    return _Optics(
        channel_order=order,
        name_style=k % 2,
        gain=level * np.exp(rng.normal(0.0, 0.4, len(CHANNELS))),
        background=level * rng.uniform(0.02, 0.1, len(CHANNELS)),
        blur=0.5 + strength * rng.uniform(0.0, 0.8),
        snr=rng.uniform(15.0, 40.0),
        pixel_scale=float(np.exp(strength * rng.uniform(-0.1, 0.1))),
    )


def _illumination(cfg: SyntheticConfig, plate: str) -> np.ndarray:
    """Smooth, vignetting-like field per channel, shared by all sites of a plate: (C, H, W)."""
    rng = _rng(cfg, "illumination", plate)
    axis = np.linspace(-1.0, 1.0, cfg.site_size, dtype=np.float32)
    yy, xx = axis[None, :, None], axis[None, None, :]
    centre = rng.uniform(-0.3, 0.3, (2, len(CHANNELS), 1, 1)).astype(np.float32)
    depth = cfg.illumination_strength * rng.uniform(0.7, 1.3, (len(CHANNELS), 1, 1))
    tilt = 0.3 * cfg.illumination_strength * rng.uniform(-1.0, 1.0, (2, len(CHANNELS), 1, 1))
    r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 2.0
    field = 1.0 - depth * r2 + tilt[0] * yy + tilt[1] * xx
    return np.clip(field, 0.2, None).astype(np.float32)


def _acquire(
    objects: np.ndarray, optics: _Optics, gain: np.ndarray, illum: np.ndarray,
    background: np.ndarray, rng: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    """Blur, scale, vignette and add shot and read noise to object intensities: uint16 (C, H, W).

    ``gain`` (C,) multiplies the source gains; ``background`` (C, H, W) is the plate's dark image.
    """
    signal = ndimage.gaussian_filter(objects, (0.0, optics.blur, optics.blur), truncate=3.0)
    g = (optics.gain * gain).astype(np.float32)[:, None, None]
    signal *= illum * g
    sd = np.sqrt(signal * (g / optics.snr**2) + (0.004 * g + 3.0) ** 2)
    sd *= rng.standard_normal(signal.shape, np.float32)
    signal += background
    signal += sd
    np.clip(signal, 0.0, 65535.0, out=signal)
    return np.rint(signal).astype(np.uint16)


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class _Phenotype:
    """Rendering parameters of one well, from its latent vector and the cell line."""

    nucleus_radius: float
    nucleus_elongation: float
    cell_radius: float
    cell_elongation: float
    irregularity: float
    intensity: np.ndarray
    dna_texture: float
    er_texture: float
    nucleoli: float
    agp_edge: float
    mito_fragmentation: float
    mito_spread: float
    count_factor: float


def _phenotype(morph: _Morphology, latent: np.ndarray, pixel_scale: float) -> _Phenotype:
    f = np.exp(_LATENT_GAIN * latent)
    nucleus_radius = morph.nucleus_radius * f[0] * pixel_scale
    return _Phenotype(
        nucleus_radius=nucleus_radius,
        nucleus_elongation=1.0 + (morph.nucleus_elongation - 1.0) * f[1],
        cell_radius=max(morph.cell_radius * f[2] * pixel_scale, 1.5 * nucleus_radius),
        cell_elongation=1.0 + (morph.cell_elongation - 1.0) * f[3],
        irregularity=morph.irregularity * f[3],
        intensity=f[4:9],
        dna_texture=0.25 * f[9],
        er_texture=0.35 * f[10],
        nucleoli=f[11],
        agp_edge=f[12],
        mito_fragmentation=f[13],
        mito_spread=f[14],
        count_factor=f[15],
    )


def _place_cells(rng: np.random.Generator, n: int, size: int, min_dist: float) -> np.ndarray:
    """Up to ``n`` centres (y, x) at least ``min_dist`` apart; cells may cross the border."""
    margin = min_dist / 2.0
    candidates = rng.uniform(-margin, size + margin, (4 * n + 8, 2))
    centres = np.empty((n, 2))
    k = 0
    for point in candidates:
        if k == n:
            break
        if k == 0 or np.min(np.sum((centres[:k] - point) ** 2, axis=1)) >= min_dist**2:
            centres[k] = point
            k += 1
    return centres[:k]


def _shape_distance(
    yy: np.ndarray, xx: np.ndarray, shapes: _Ellipses, i: int, harmonics: tuple[complex, ...] = ()
) -> np.ndarray:
    """Normalised distance from ellipse ``i``'s centre: < 1 inside, 1 on its outline.

    ``harmonics`` are complex amplitudes of outline harmonics 2, 3, 4, ... (irregular shapes).
    """
    cy, cx = shapes.centre[i].tolist()
    theta = float(shapes.theta[i])
    c, s = math.cos(theta), math.sin(theta)
    dy, dx = yy - cy, xx - cx
    u = (dx * c + dy * s) * (1.0 / float(shapes.a[i]))
    v = (dy * c - dx * s) * (1.0 / float(shapes.b[i]))
    rho = np.hypot(u, v)
    if not harmonics:
        return rho
    direction = (u + 1j * v) / (rho + 1e-6)
    power = direction * direction
    outline = np.ones_like(rho)
    for coefficient in harmonics:
        outline += (coefficient * power).real
        power = power * direction
    return rho / outline


def _splat(yx: np.ndarray, weights: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Gaussian spots of peak ``weights`` at points ``yx`` (n, 2) on a size x size image."""
    iy, ix = np.rint(yx).astype(np.int64).T
    ok = (iy >= 0) & (iy < size) & (ix >= 0) & (ix < size)
    flat = np.bincount(iy[ok] * size + ix[ok], weights[ok], minlength=size * size)
    image = flat.reshape(size, size).astype(np.float32)
    return ndimage.gaussian_filter(image, sigma, truncate=3.0) * np.float32(2.0 * np.pi * sigma**2)


def _textures(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit-variance smooth noise at chromatin, ER and actin scales: (3, H, W)."""
    noise = rng.standard_normal((3, size, size), np.float32)
    for field, sigma in zip(noise, (0.8, 1.5, 3.0), strict=True):
        ndimage.gaussian_filter(field, sigma, output=field, truncate=3.0)
        field /= field.std()
    return noise


@dataclass(frozen=True)
class _Ellipses:
    """Centres (n, 2) as (y, x), semi-axes ``a``, ``b`` and angles ``theta`` of n ellipses."""

    centre: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray

    def to_image(self, owner: np.ndarray, rho: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Pixel (y, x) of polar points (``rho`` in outline units) in ellipses ``owner``."""
        x = rho * np.cos(alpha) * self.a[owner]
        y = rho * np.sin(alpha) * self.b[owner]
        c, s = np.cos(self.theta[owner]), np.sin(self.theta[owner])
        return self.centre[owner] + np.stack([x * s + y * c, x * c - y * s], axis=1)


def _render_cells(
    pheno: _Phenotype, n_expected: float, cell_variability: float, size: int,
    rng: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    """Noise-free object intensities of one site (C, H, W) in CHANNELS order, ~1 at a nucleus."""
    objects = np.zeros((len(CHANNELS), size, size), np.float32)
    nuc_a = pheno.nucleus_radius * math.sqrt(pheno.nucleus_elongation)
    centres = _place_cells(rng, rng.poisson(n_expected), size, 2.1 * nuc_a)
    n = len(centres)
    if n == 0:
        return objects
    cv = cell_variability
    g2 = rng.random(n) < 0.25  # cells in G2: bigger, brighter nuclei
    nuc_f = np.exp(cv * 0.1 * rng.normal(size=n)) * np.where(g2, 1.15, 1.0)
    nuc_b = pheno.nucleus_radius / math.sqrt(pheno.nucleus_elongation)
    nt = rng.uniform(0.0, np.pi, n)
    cell_f = np.exp(cv * 0.15 * rng.normal(size=n))
    cell_a = pheno.cell_radius * math.sqrt(pheno.cell_elongation) * cell_f
    cell_b = pheno.cell_radius / math.sqrt(pheno.cell_elongation) * cell_f
    body = _Ellipses(centres, cell_a, cell_b, nt + rng.normal(0.0, 0.3, n))
    amp = pheno.irregularity * np.abs(rng.normal(size=(n, 3))) * [0.6, 0.4, 0.25]
    harmonics = amp * np.exp(1j * rng.uniform(0.0, 2.0 * np.pi, (n, 3)))
    nuc_centre = centres + rng.normal(0.0, 0.1, (n, 2)) * pheno.cell_radius
    nucleus = _Ellipses(nuc_centre, nuc_a * nuc_f, nuc_b * nuc_f, nt)
    level = pheno.intensity * np.exp(cv * 0.25 * rng.normal(size=(n, len(CHANNELS))))
    level[:, 0] *= np.where(g2, 1.5, 1.0)
    tex = _textures(rng, size)
    half = np.ceil(np.maximum(cell_a, cell_b) * (1.0 + amp.sum(axis=1)) + 2).astype(int)
    for i in range(n):
        cy, cx = centres[i]
        y0, y1 = max(int(cy) - half[i], 0), min(int(cy) + half[i] + 1, size)
        x0, x1 = max(int(cx) - half[i], 0), min(int(cx) + half[i] + 1, size)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        xx = np.arange(x0, x1, dtype=np.float32)[None, :]
        s = _shape_distance(yy, xx, body, i, tuple(complex(h) for h in harmonics[i]))
        d = _shape_distance(yy, xx, nucleus, i)
        _paint_cell(objects[:, y0:y1, x0:x1], s, d, tex[:, y0:y1, x0:x1], level[i].tolist(), pheno)
    objects[2] += _nucleoli(rng, nucleus, pheno.nucleoli * level[:, 2], size)
    objects[4] += _mitochondria(rng, body, pheno, level[:, 4], size)
    return objects


def _paint_cell(
    patch: np.ndarray, s: np.ndarray, d: np.ndarray, tex: np.ndarray, level: list[float],
    pheno: _Phenotype,
) -> None:  # fmt: skip
    """Add one cell's diffuse channels in place; ``s``/``d``: distances to cell/nucleus outline."""
    reach = 0.5 * (pheno.cell_radius / pheno.nucleus_radius - 1.0)
    cyto = np.clip((1.0 - s) * 6.0, 0.0, 1.0)
    dome = np.clip(1.0 - d * d, 0.0, 1.0) ** 0.4
    perinuclear = np.exp(np.maximum(d - 1.0, 0.0) * (-1.0 / reach))
    envelope = np.exp(-(((d - 1.0) * 6.0) ** 2))
    membrane = np.exp(-(((s - 0.92) * (1 / 0.06)) ** 2))
    t_dna, t_er = pheno.dna_texture, pheno.er_texture
    patch[0] += dome * np.exp(tex[0] * t_dna + (math.log(level[0]) - t_dna**2 / 2))
    er = cyto * (0.15 + 0.8 * perinuclear * (1.0 - dome) + 0.5 * envelope)
    patch[1] += er * np.exp(tex[1] * t_er + (math.log(level[1]) - t_er**2 / 2))
    patch[2] += cyto * (0.15 + 0.6 * perinuclear) * (1.0 - 0.6 * dome) * level[2]
    actin = cyto * np.exp(tex[2] * 0.4 + math.log(0.3 * level[3]) - 0.08)
    patch[3] += actin + membrane * (pheno.agp_edge * level[3])
    patch[4] += cyto * perinuclear * (0.12 * level[4])


def _nucleoli(
    rng: np.random.Generator, nuclei: _Ellipses, level: np.ndarray, size: int
) -> np.ndarray:
    """RNA-rich nucleoli: one or more bright spots inside each nucleus."""
    n = len(nuclei.a)
    owner = np.repeat(np.arange(n), 1 + rng.poisson(1.5, n))
    rho, alpha = 0.55 * np.sqrt(rng.random(len(owner))), rng.uniform(0, 2 * np.pi, len(owner))
    weight = 0.8 * level[owner] * np.exp(0.3 * rng.normal(size=len(owner)))
    return _splat(nuclei.to_image(owner, rho, alpha), weight, size, 1.2)


def _mitochondria(
    rng: np.random.Generator, cells: _Ellipses, pheno: _Phenotype, level: np.ndarray, size: int
) -> np.ndarray:
    """Punctate mitochondria: segments that get shorter and more numerous when fragmented."""
    frag = pheno.mito_fragmentation
    per_cell = max(1, round(25 * frag * (pheno.cell_radius / 24.0) ** 2))
    length = max(1, round(5.0 / frag))
    owner = np.repeat(np.arange(len(cells.a)), per_cell)
    rho0 = pheno.nucleus_radius / pheno.cell_radius
    spread = np.minimum(np.abs(rng.normal(size=len(owner))) * 0.6 * pheno.mito_spread, 1.0)
    rho, alpha = rho0 + (0.95 - rho0) * spread, rng.uniform(0, 2 * np.pi, len(owner))
    start = cells.to_image(owner, rho, alpha)
    beta = rng.uniform(0, 2 * np.pi, len(owner))[:, None]
    steps = np.arange(length)[None, :]
    ys = start[:, :1] + steps * np.sin(beta)
    xs = start[:, 1:] + steps * np.cos(beta)
    weight = np.repeat(0.7 * level[owner], length)
    return _splat(np.stack([ys.ravel(), xs.ravel()], axis=1), weight, size, 0.7)


# --------------------------------------------------------------------------- plates


def _file_name(optics: _Optics, plate: str, well: str, site: int, channel: str) -> str:
    ch = optics.channel_order.index(channel) + 1
    if optics.name_style == 0:  # Phenix-like
        row, col = ord(well[0]) - 64, int(well[1:])
        return f"r{row:02d}c{col:02d}f{site:02d}p01-ch{ch}sk1fk1fl1.tiff"
    return f"{plate}_{well}_s{site}_w{ch}.tif"  # ImageXpress-like


@dataclass(frozen=True)
class _Plate:
    """What all sites of one plate share."""

    cfg: SyntheticConfig
    name: str
    source: str
    batch: str
    morph: _Morphology
    layout: pd.DataFrame
    optics: _Optics
    drift: np.ndarray
    illum: np.ndarray
    background: np.ndarray
    density: float
    edge_gain: np.ndarray


def _plate(cfg: SyntheticConfig, plate: str) -> _Plate:
    info = _plate_row(cfg, plate)
    optics = _optics(cfg, info["source"])
    illum = _illumination(cfg, plate)
    plate_rng = _rng(cfg, "plate", plate)
    return _Plate(
        cfg=cfg,
        name=plate,
        source=info["source"],
        batch=info["batch"],
        morph=MORPHOLOGIES[info["cell_line"]],
        layout=_plate_layout(cfg, plate),
        optics=optics,
        drift=np.exp(_rng(cfg, "batch", info["batch"]).normal(0.0, cfg.batch_drift, len(CHANNELS))),
        illum=illum,
        background=optics.background.astype(np.float32)[:, None, None] * (0.5 + 0.5 * illum),
        density=float(np.exp(plate_rng.normal(0.0, 0.1))),
        edge_gain=plate_rng.uniform(0.5, 1.5, len(CHANNELS)),
    )


def _site(plate: _Plate, w: int, site: int) -> np.ndarray:
    """Raw uint16 image (C, H, W) of site ``site`` of the ``w``-th well, in CHANNELS order."""
    cfg, optics, well = plate.cfg, plate.optics, plate.layout.iloc[w]
    pheno = _phenotype(plate.morph, well["latent"], optics.pixel_scale)
    edge = cfg.edge_effect * well["edge"]
    area = (cfg.site_size / BASE_SITE) ** 2 / optics.pixel_scale**2
    n_expected = cfg.cells_per_site * plate.morph.density * area * pheno.count_factor
    n_expected *= plate.density * (1.0 - edge)
    gain = plate.drift * (1.0 + edge * plate.edge_gain)
    rng = _rng(cfg, "site", plate.name, w, site)
    objects = _render_cells(pheno, n_expected, cfg.cell_variability, cfg.site_size, rng)
    return _acquire(objects, optics, gain, plate.illum, plate.background, rng)


def render_site(cfg: SyntheticConfig, plate: str, well: str, site: int) -> np.ndarray:
    """Raw uint16 image (C, H, W) of one site in ``CHANNELS`` order, as render_plate saves it."""
    context = _plate(cfg, plate)
    wells = context.layout["well"].tolist()
    if well not in wells or not 1 <= site <= cfg.sites_per_well:
        raise ValueError(f"no site {site} of well {well!r} on synthetic plate {plate!r}")
    return _site(context, wells.index(well), site)


def render_plate(
    cfg: SyntheticConfig, plate: str, load_data_out: str | Path, images_dir: str | Path
) -> None:
    """Render one plate: a uint16 TIFF per channel per site and a JUMP-style ``load_data.csv``.

    ``PathName_Orig<Ch>`` is written relative to the CSV's folder, and the channel columns
    and channel numbers in file names follow the source's own channel order.
    """
    context = _plate(cfg, plate)
    order = context.optics.channel_order
    images_dir, load_data_out = Path(images_dir), Path(load_data_out)
    images_dir.mkdir(parents=True, exist_ok=True)
    load_data_out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(os.path.relpath(images_dir, load_data_out.parent)).as_posix()
    rows = []
    for w, well in enumerate(context.layout["well"]):
        for site in range(1, cfg.sites_per_well + 1):
            raw = _site(context, w, site)
            names = {ch: _file_name(context.optics, plate, well, site, ch) for ch in order}
            for channel, name in names.items():
                tifffile.imwrite(images_dir / name, raw[CHANNELS.index(channel)])
            rows.append(
                {"Metadata_Source": context.source, "Metadata_Batch": context.batch,
                 "Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site}
                | {f"FileName_Orig{ch}": names[ch] for ch in order}
                | {f"PathName_Orig{ch}": folder for ch in order}
            )  # fmt: skip
    pd.DataFrame(rows).to_csv(load_data_out, index=False)
