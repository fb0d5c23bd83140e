"""Nuclei and cells of a scaled site, segmented the way CellProfiler's JUMP pipeline does.

- **Nuclei** (IdentifyPrimaryObjects): Gaussian-smoothed DNA above the site's Otsu
  threshold (the manifest's ``dna_otsu``), small objects removed, touching nuclei split by
  a watershed on the smoothed intensity from distance-transform peaks: the rule of
  :func:`paintssl.preprocess.plate.count_nuclei` (the manifest's ``cell_count``), with its
  JUMP 20x settings scaled to the nucleus diameter, plus CellProfiler's size filter after
  declumping (split pieces under the minimum area are merged into their neighbours).
- **Cells** (IdentifySecondaryObjects, "Watershed - Image"): grown from the nuclei by a
  watershed on the cytoplasm image (JUMP's ``JUMP_analysis_v1.cppipe`` uses RNA) inside
  its foreground: three-class Otsu of the log image, middle class foreground, times 0.7.
- Objects whose nucleus touches the border are dropped before measuring (FilterObjects).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_multiotsu
from skimage.morphology import remove_small_objects
from skimage.segmentation import clear_border, watershed

from paintssl.preprocess.plate import count_nuclei, dna_otsu
from paintssl.tables import DNA

JUMP_NUCLEUS_DIAMETER = 30.0
"""Nucleus diameter (px) that :func:`count_nuclei`'s defaults are set for (JUMP 20x)."""


def nucleus_settings(nucleus_diameter: float) -> dict[str, float]:
    """:func:`count_nuclei`'s defaults scaled from 30 px nuclei to ``nucleus_diameter``."""
    defaults = inspect.signature(count_nuclei).parameters
    scale = nucleus_diameter / JUMP_NUCLEUS_DIAMETER
    return {
        "sigma": defaults["sigma"].default * scale,
        "min_area": max(1, round(defaults["min_area"].default * scale**2)),
        "min_distance": max(1, round(defaults["min_distance"].default * scale)),
    }


def segment_nuclei(
    dna: np.ndarray, otsu: float | None = None, nucleus_diameter: float = JUMP_NUCLEUS_DIAMETER
) -> np.ndarray:
    """Label the nuclei of a scaled [0, 1] DNA image.

    Parameters
    ----------
    dna
        (H, W) DNA image in scaled [0, 1] units.
    otsu
        Threshold (the manifest's ``dna_otsu``); None computes it with :func:`dna_otsu`.
    nucleus_diameter
        Typical nucleus diameter in pixels; see :func:`nucleus_settings`.

    Returns
    -------
    numpy.ndarray
        int32 label image, nuclei numbered 1..N, background 0. N is :func:`count_nuclei`
        with the same (scaled) settings, less the split pieces under its ``min_area``,
        which are merged into their neighbours.
    """
    settings = nucleus_settings(nucleus_diameter)
    threshold = dna_otsu(dna) if otsu is None else otsu
    smooth = ndi.gaussian_filter(dna.astype(np.float32), settings["sigma"])
    mask = remove_small_objects(smooth > threshold, max_size=settings["min_area"] - 1)
    objects, n_objects = ndi.label(mask)
    if n_objects == 0:
        return np.zeros(dna.shape, np.int32)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=settings["min_distance"], exclude_border=False)
    without_peak = np.setdiff1d(np.arange(1, n_objects + 1), objects[tuple(peaks.T)])
    extra = ndi.maximum_position(distance, objects, without_peak) if without_peak.size else []
    seeds = np.concatenate([peaks.reshape(-1, 2), np.asarray(extra, np.int64).reshape(-1, 2)])
    markers = np.zeros(dna.shape, np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    labels = watershed(-smooth, markers, mask=mask)
    # a split piece under min_area goes to its neighbours (an object keeps its largest piece)
    area = np.bincount(labels.ravel(), minlength=len(seeds) + 1)[1:]
    component = objects[tuple(seeds.T)]
    keep = area >= settings["min_area"]
    order = np.lexsort((-area, component))
    largest = np.zeros(len(seeds), bool)
    largest[order[np.unique(component[order], return_index=True)[1]]] = True
    keep |= largest & (np.bincount(component, keep, n_objects + 1) == 0)[component]
    if not keep.all():
        lut = np.zeros(len(seeds) + 1, np.int32)
        lut[1:][keep] = np.arange(1, int(keep.sum()) + 1)
        labels = watershed(-smooth, lut[markers], mask=mask)
    return labels.astype(np.int32)


def cytoplasm_threshold(image: np.ndarray, correction: float = 0.7) -> float:
    """Foreground threshold of a cytoplasm image, as JUMP sets it for cells.

    Three-class Otsu of the log of the positive pixels, the middle class counted as
    foreground (the lower of the two thresholds), back in intensity units, times
    ``correction``. Returns ``inf`` (no foreground) for an image without three levels.
    """
    positive = image[image > 0]
    if positive.size == 0:
        return float("inf")
    try:
        lower = threshold_multiotsu(np.log(positive), classes=3)[0]
    except ValueError:  # fewer than three grey levels
        return float("inf")
    return correction * float(np.exp(lower))


def segment_cells(
    nuclei: np.ndarray,
    cytoplasm: np.ndarray,
    threshold: float | None = None,
    sigma: float = 1.0,
) -> np.ndarray:
    """Grow cells from labelled nuclei on a cytoplasm image (seeded watershed).

    Parameters
    ----------
    nuclei
        Label image of :func:`segment_nuclei`.
    cytoplasm
        (H, W) scaled image the cells are grown on (JUMP: RNA).
    threshold
        Foreground threshold; None uses :func:`cytoplasm_threshold`.
    sigma
        Gaussian smoothing (px) before thresholding and flooding.

    Returns
    -------
    numpy.ndarray
        int32 labels: each cell has its nucleus' label and contains its nucleus; pixels
        outside the (hole-filled) foreground, or not reached from a nucleus, are 0.
    """
    smooth = ndi.gaussian_filter(cytoplasm.astype(np.float32), sigma)
    level = cytoplasm_threshold(smooth) if threshold is None else threshold
    mask = ndi.binary_fill_holes((smooth > level) | (nuclei > 0))
    return watershed(-smooth, nuclei, mask=mask).astype(np.int32)


def drop_border_objects(nuclei: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove the nuclei that touch the image border, and their cells."""
    kept = np.unique(clear_border(nuclei))
    keep = np.isin(cells, kept[kept > 0])
    return np.where(np.isin(nuclei, kept), nuclei, 0), np.where(keep, cells, 0)


def segment_site(
    image: np.ndarray,
    channels: Sequence[str],
    otsu: float | None,
    nucleus_diameter: float = JUMP_NUCLEUS_DIAMETER,
    cytoplasm_channel: str = "RNA",
    exclude_border: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei and cells of a scaled (C, H, W) site (``channels`` names its planes).

    Nuclei come from :func:`segment_nuclei` on DNA (``otsu``: the manifest's ``dna_otsu``),
    cells from :func:`segment_cells` on ``cytoplasm_channel`` (smoothed by
    ``nucleus_diameter / 30`` px); with ``exclude_border`` the nuclei touching the image
    border and their cells are removed (:func:`drop_border_objects`).
    """
    nuclei = segment_nuclei(image[list(channels).index(DNA)], otsu, nucleus_diameter)
    cytoplasm = image[list(channels).index(cytoplasm_channel)]
    cells = segment_cells(nuclei, cytoplasm, sigma=nucleus_diameter / JUMP_NUCLEUS_DIAMETER)
    return drop_border_objects(nuclei, cells) if exclude_border else (nuclei, cells)
