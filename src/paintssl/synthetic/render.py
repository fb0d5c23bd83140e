"""Pixels of the synthetic dataset: optics, illumination, cells, and whole plates on disk."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from paintssl.synthetic.config import (
    LATENT_GAIN,
    Morphology,
    SyntheticConfig,
    rng_for,
)
from paintssl.tables import CHANNELS

# --------------------------------------------------------------------------- technical effects


@dataclass(frozen=True)
class Optics:
    """Per-source microscope: channel order and file naming, gains, blur, noise, pixel size."""

    channel_order: tuple[str, ...]
    name_style: int
    gain: np.ndarray
    background: np.ndarray
    blur: float
    snr: float
    pixel_scale: float


def optics_of(cfg: SyntheticConfig, source: str) -> Optics:
    """Return the microscope of ``source``: channel order, naming, gains, blur, noise, pixels."""
    k = int(source.removeprefix("source_"))
    orders = list(itertools.permutations(CHANNELS))[1:]  # never the canonical order
    order = orders[rng_for(cfg, "channel_orders").permutation(len(orders))[(k - 1) % len(orders)]]
    rng = rng_for(cfg, "optics", source)
    level = np.exp(rng.uniform(np.log(600.0), np.log(12000.0)))
    strength = cfg.optics_strength
    return Optics(
        channel_order=order,
        name_style=k % 2,
        gain=level * np.exp(rng.normal(0.0, 0.4, len(CHANNELS))),
        background=level * rng.uniform(0.02, 0.1, len(CHANNELS)),
        blur=0.5 + strength * rng.uniform(0.0, 0.8),
        snr=rng.uniform(15.0, 40.0),
        pixel_scale=float(np.exp(strength * rng.uniform(-0.1, 0.1))),
    )


def illumination(cfg: SyntheticConfig, plate: str) -> np.ndarray:
    """Smooth, vignetting-like field per channel, shared by all sites of a plate: (C, H, W)."""
    rng = rng_for(cfg, "illumination", plate)
    axis = np.linspace(-1.0, 1.0, cfg.site_size, dtype=np.float32)
    yy, xx = axis[None, :, None], axis[None, None, :]
    centre = rng.uniform(-0.3, 0.3, (2, len(CHANNELS), 1, 1)).astype(np.float32)
    depth = cfg.illumination_strength * rng.uniform(0.7, 1.3, (len(CHANNELS), 1, 1))
    tilt = 0.3 * cfg.illumination_strength * rng.uniform(-1.0, 1.0, (2, len(CHANNELS), 1, 1))
    r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 2.0
    field = 1.0 - depth * r2 + tilt[0] * yy + tilt[1] * xx
    return np.clip(field, 0.2, None).astype(np.float32)


def acquire(
    objects: np.ndarray, optics: Optics, gain: np.ndarray, illum: np.ndarray,
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
class Phenotype:
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


def phenotype(morph: Morphology, latent: np.ndarray, pixel_scale: float) -> Phenotype:
    """Return the cell-line morphology ``morph`` changed by a well's ``latent`` phenotype."""
    f = np.exp(LATENT_GAIN * latent)
    nucleus_radius = morph.nucleus_radius * f[0] * pixel_scale
    return Phenotype(
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


def render_cells(
    pheno: Phenotype, n_expected: float, cell_variability: float, size: int,
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
    pheno: Phenotype,
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
    rng: np.random.Generator, cells: _Ellipses, pheno: Phenotype, level: np.ndarray, size: int
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
