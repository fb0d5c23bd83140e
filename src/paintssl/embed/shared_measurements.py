"""cp-measure's granularity and radial distribution, with the work they share done once.

cp-measure measures one channel of one object set per call. Two of its groups repeat work
across calls that does not depend on what changes between them:

- ``granularity``: the background removal and the 16 erosion-reconstruction steps are done
  on the whole image, whatever the objects; only the per-object means depend on them. So
  :func:`granularity_by_compartment` calls cp-measure once per channel on *atoms* (the
  disjoint pixel sets that Cells, Nuclei and Cytoplasm are unions of), recovers each atom's
  mean at every step from cp-measure's spectrum, and pools atoms into the compartments'
  objects by pixel count (the per-object mean is linear in the pixels).
- ``radial_distribution``: each object's centre and every pixel's normalised distance and
  wedge depend on the labels only. :func:`radial_geometry` computes them once per object
  set with cp-measure's own steps (centre tie-break, colouring, propagation, scaled bins);
  :func:`radial_features` measures one channel on them.

``tests/unit/test_cellprofiler.py`` checks both against cp-measure's functions on rendered
sites (granularity to 1e-9 relative, radial distribution exactly).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import centrosome.cpmorphology
import centrosome.propagate
import numpy as np
import scipy.sparse
from cp_measure.core.measuregranularity import get_granularity
from cp_measure.core.measureobjectintensitydistribution import (
    MF_FRAC_AT_D,
    MF_MEAN_FRAC,
    MF_RADIAL_CV,
    _maximum_position_of_labels,
)

__all__ = ["granularity_by_compartment", "radial_features", "radial_geometry"]
EPS = float(np.finfo(float).eps)


def _atoms(masks: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Label image of the atoms (1..m) and, per compartment, the object of every atom.

    An atom is a set of pixels with the same label in every compartment; the second
    array is (compartments x m), 0 where an atom is in no object of that compartment.
    """
    stack = np.stack([np.asarray(m, np.int64).ravel() for m in masks.values()])
    key = np.zeros(stack.shape[1], np.int64)
    for row in stack:  # mixed radix: a unique integer per combination of labels
        key = key * (int(row.max()) + 1) + row
    unique, inverse = np.unique(key, return_inverse=True)
    first = np.zeros(len(unique), np.int64)
    first[inverse[::-1]] = np.arange(len(key))[::-1]  # one pixel of each atom
    offset = int(unique[0] == 0)  # key 0: background in every compartment
    atoms = (inverse + 1 - offset).reshape(next(iter(masks.values())).shape)
    return atoms.astype(np.int32), stack[:, first[offset:]]


def granularity_by_compartment(
    masks: Mapping[str, np.ndarray], n: int, pixels: np.ndarray, **params: object
) -> dict[str, dict[str, np.ndarray]]:
    """cp-measure's ``get_granularity`` of each compartment's objects 1..n, one call in all.

    Parameters
    ----------
    masks
        ``{compartment: labels}`` with object labels 1..n (an object may have no pixels in
        a compartment: its values are NaN, as cp-measure's mean of no pixel).
    n
        Number of objects.
    pixels
        One channel, float in [0, 1].
    params
        Keyword arguments of ``get_granularity``.

    Returns
    -------
    dict
        ``{compartment: {"Granularity_1": (n,), ...}}``.
    """
    atoms, owners = _atoms(masks)
    m = owners.shape[1]
    spectrum = get_granularity(atoms, pixels, **params)
    counts = np.bincount(atoms.ravel(), minlength=m + 1)[1:].astype(float)
    sums = np.bincount(atoms.ravel(), weights=pixels.ravel().astype(float), minlength=m + 1)
    means = [sums[1:] / counts]
    start = np.maximum(means[0], EPS)
    for step in range(1, len(spectrum) + 1):  # cp-measure: gss = (m_prev - m) * 100 / start
        means.append(means[-1] - spectrum[f"Granularity_{step}"] * start / 100)
    atom_means = np.stack(means)  # (steps + 1, atoms)
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):  # objects without pixels: NaN
        for owner, name in zip(owners, masks, strict=True):
            pooled = np.zeros((n + 1, m))
            pooled[owner, np.arange(m)] = counts
            pooled = pooled[1:]
            object_means = (atom_means @ pooled.T) / pooled.sum(axis=1)
            first = np.maximum(object_means[0], EPS)
            out[name] = {
                f"Granularity_{step}": (object_means[step - 1] - object_means[step]) * 100 / first
                for step in range(1, len(spectrum) + 1)
            }
    return out


@dataclass(frozen=True)
class RadialGeometry:
    """Object, ring and wedge of every pixel reached from its object's centre.

    The pixel counts per ring and per wedge of each ring depend on the labels only, so
    they are counted once here, not once per channel.
    """

    reached: np.ndarray  # (H, W) bool
    objects: np.ndarray  # object index 0..n-1 per reached pixel (C order)
    rings: np.ndarray  # 0..bin_count-1 (bin_count: beyond the edge, never in scaled bins)
    wedges: np.ndarray  # 0..7: octant around the object's centre
    n_objects: int
    bin_count: int
    ring_area_share: np.ndarray  # (n, bin_count + 1): each ring's share of the object's pixels
    ring_pixels: tuple[np.ndarray, ...]  # per ring: indices of its reached pixels
    wedge_counts: tuple[np.ndarray, ...]  # per ring: (n, 8) pixels per object and wedge


def radial_geometry(labels: np.ndarray, bin_count: int = 4) -> RadialGeometry:
    """Centres, scaled distances and wedges of contiguous labels 1..n, as cp-measure's."""
    n = int(labels.max())
    d_to_edge = centrosome.cpmorphology.distance_to_edge(labels)
    ci, cj = _maximum_position_of_labels(d_to_edge, labels, n)
    centres = np.zeros(labels.shape, int)
    centres[ci, cj] = labels[ci, cj]
    colours = centrosome.cpmorphology.color_labels(labels)
    d_from_centre = np.zeros(labels.shape)
    seeds = np.zeros(labels.shape, int)
    for colour in range(1, int(np.max(colours)) + 1):  # touching objects apart
        mask = colours == colour
        seed, distance = centrosome.propagate.propagate(np.zeros(labels.shape), centres, mask, 1)
        d_from_centre[mask] = distance[mask]
        seeds[mask] = seed[mask]
    reached = seeds > 0
    owner = seeds[reached] - 1
    scaled = d_from_centre[reached] / (d_from_centre[reached] + d_to_edge[reached] + 0.001)
    rings = np.minimum((scaled * bin_count).astype(int), bin_count)
    i, j = np.nonzero(reached)
    di, dj = i - ci[owner], j - cj[owner]
    wedges = (di > 0).astype(int) + (dj > 0).astype(int) * 2 + (abs(di) > abs(dj)) * 4
    objects = labels[reached] - 1
    area = _sums(np.ones(len(objects)), objects, rings, (n, bin_count + 1))
    ring_pixels = tuple(np.flatnonzero(rings == ring) for ring in range(bin_count))
    wedge_counts = tuple(_sums(np.ones(len(p)), objects[p], wedges[p], (n, 8)) for p in ring_pixels)
    share = area / area.sum(axis=1, keepdims=True)
    return RadialGeometry(
        reached, objects, rings, wedges, n, bin_count, share, ring_pixels, wedge_counts
    )


def _sums(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple) -> np.ndarray:
    """Dense sums of ``values`` per (row, col), accumulated as cp-measure does."""
    return scipy.sparse.coo_matrix((values, (rows, cols)), shape).toarray()


def _wedge_cv(wedge_sums: np.ndarray, wedge_counts: np.ndarray) -> np.ndarray:
    """Per object, std / mean of its wedges' mean intensities (wedges with pixels only).

    The arithmetic of cp-measure's masked-array ``np.std / np.mean``, step for step (the
    same sums in the same order, so the same bits), without ``numpy.ma``'s overhead: 0
    where an object has no wedge; the std where the mean is zero (``numpy.ma`` keeps the
    numerator there).
    """
    empty = wedge_counts == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(empty, 0.0, wedge_sums / wedge_counts)
        count = (~empty).sum(axis=1)
        mean = means.sum(axis=1) * 1.0 / count
        deviation = np.where(empty, 0.0, means - mean[:, None])
        std = np.sqrt((deviation * deviation).sum(axis=1) / count)
        cv = std / mean
    zero_mean = np.abs(mean) <= np.abs(std) * np.finfo(float).tiny  # numpy.ma's safe divide
    return np.where(count == 0, 0.0, np.where(zero_mean, std, cv))


def radial_features(
    geometry: RadialGeometry, pixels: np.ndarray
) -> Iterator[tuple[str, np.ndarray]]:
    """FracAtD, MeanFrac and RadialCV of one channel per object (cp-measure's names)."""
    g, n, k = geometry, geometry.n_objects, geometry.bin_count
    values = pixels[g.reached]
    intensity = _sums(values, g.objects, g.rings, (n, k + 1))
    fraction_at_distance = intensity / intensity.sum(axis=1, keepdims=True)
    mean_fraction = fraction_at_distance / (g.ring_area_share + EPS)
    for ring, (inside, wedge_counts) in enumerate(zip(g.ring_pixels, g.wedge_counts, strict=True)):
        rows, wedges = g.objects[inside], g.wedges[inside]
        wedge_sums = _sums(values[inside], rows, wedges, (n, 8))
        cv = _wedge_cv(wedge_sums, wedge_counts)
        yield MF_FRAC_AT_D % (ring + 1, k), fraction_at_distance[:, ring]
        yield MF_MEAN_FRAC % (ring + 1, k), mean_fraction[:, ring]
        yield MF_RADIAL_CV % (ring + 1, k), cv
