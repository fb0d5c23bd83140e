"""CellProfiler-style baseline: cp-measure features of segmented cells, median per well.

Segmentation is in :mod:`paintssl.embed.segment` (nuclei on DNA, cells grown on RNA, as
JUMP's production pipeline does). Compartments are Cells, Nuclei and Cytoplasm (cells minus
their nuclei shrunk by one pixel, as JUMP's IdentifyTertiaryObjects does); only cells whose
nucleus does not touch the image border are measured. Measurements are cp-measure's
functions (settings in ``GROUP_PARAMS``), named as CellProfiler names them:
``Cells_Intensity_MeanIntensity_DNA``, ``Nuclei_AreaShape_Area``,
``Cytoplasm_Texture_Contrast_ER_3_00_256``, ``Nuclei_Granularity_2_Mito``,
``Cells_RadialDistribution_FracAtD_RNA_1of4``, ``Cells_Correlation_Correlation_DNA_ER``
(pairs in channel order; ``Manders``/``RWC``/``Costes`` in both orders). Positional columns
(``Location_*``, ``AreaShape_Center_*``, bounding-box corners) are not kept. A well's
profile is the median over all its measured cells.

Per cell, a feature is NaN where cp-measure leaves it undefined: texture of an object too
small or thin for the texture offset (on synthetic sites, about 1 % of nuclei), a
correlation in an object where a channel is constant. The well median skips NaN, so a
well feature is NaN only when it is undefined for every cell of the well, or the well
has no cells.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from cp_measure.bulk import get_core_measurements, get_correlation_measurements
from cp_measure.core.numba.measuretexture import get_texture
from skimage.segmentation import find_boundaries

from paintssl.embed.segment import JUMP_NUCLEUS_DIAMETER, segment_site
from paintssl.embed.shared_measurements import (
    granularity_by_compartment,
    radial_features,
    radial_geometry,
)
from paintssl.preprocess.codec import U16_MAX, read_scaled_site
from paintssl.preprocess.images import imap_bounded
from paintssl.tables import (
    CELL_COUNT,
    CHANNELS,
    DNA,
    N_SITES,
    SITE,
    WELL_KEYS,
    write_parquet,
)

__all__ = [
    "CellProfilerConfig", "feature_names", "measure_plate", "measure_site", "site_features",
    "well_features",
]  # fmt: skip
log = logging.getLogger(__name__)
COMPARTMENTS: tuple[str, ...] = ("Cells", "Nuclei", "Cytoplasm")
SHAPE_GROUPS: tuple[str, ...] = ("sizeshape", "zernike", "feret")
CHANNEL_GROUPS: tuple[str, ...] = (
    "intensity", "granularity", "radial_distribution", "radial_zernikes", "texture",
)  # fmt: skip
CORRELATION_GROUPS: tuple[str, ...] = ("pearson", "manders_fold", "rwc", "costes")
SHARED_GROUPS: tuple[str, ...] = ("granularity", "radial_distribution")
"""Measured by :mod:`paintssl.embed.shared_measurements` (cp-measure's values, less work)."""
FEATURE_GROUPS: tuple[str, ...] = (
    "sizeshape", "zernike", "feret", "intensity", "granularity", "radial_distribution",
    "texture", "pearson", "manders_fold", "rwc",
)  # fmt: skip
"""Default cp-measure groups: JUMP's modules, without Costes and intensity Zernikes."""
GROUP_PARAMS: Mapping[str, Mapping[str, object]] = {
    "sizeshape": {"calculate_advanced": False},  # as JUMP
    "costes": {"scale_max": U16_MAX},  # site TIFFs are uint16 / 65535
}
"""cp-measure keyword arguments per group; other settings are cp-measure's defaults.

Those match JUMP's pipeline (radial distribution: 4 scaled bins, maximum radius 100;
Manders/RWC threshold 15 %; texture 256 grey levels) except granularity, which JUMP
subsamples by 0.5 and cp-measure (and CellProfiler's default) by 0.25, about 4x faster.
"""
POSITIONAL = ("Location_", "Center_", "BoundingBoxMinimum_", "BoundingBoxMaximum_")
"""cp-measure keys that give an object's position, not its morphology (not kept)."""
OBJECT = "Metadata_ObjectNumber"


@dataclass(frozen=True)
class CellProfilerConfig:
    """Segmentation and measurement settings of the CellProfiler-style baseline.

    Attributes
    ----------
    nucleus_diameter : typical nucleus diameter in pixels (JUMP 20x: 30; the built-in
        synthetic sites: about 18); scales the nucleus smoothing, size and peak distance.
    cytoplasm_channel : the channel cells are grown on (JUMP: RNA).
    feature_groups : cp-measure groups to measure (see ``FEATURE_GROUPS``).
    compartments : any of Cells, Nuclei, Cytoplasm.
    texture_scales : Haralick offsets in pixels (JUMP: 3, 5, 10; each one is a texture pass).
    exclude_border : drop cells whose nucleus touches the image border (as JUMP does).
    """

    nucleus_diameter: float = JUMP_NUCLEUS_DIAMETER
    cytoplasm_channel: str = "RNA"
    feature_groups: tuple[str, ...] = FEATURE_GROUPS
    compartments: tuple[str, ...] = COMPARTMENTS
    texture_scales: tuple[int, ...] = (3,)
    exclude_border: bool = True

    def __post_init__(self) -> None:
        for key in ("feature_groups", "compartments", "texture_scales"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        known = SHAPE_GROUPS + CHANNEL_GROUPS + CORRELATION_GROUPS
        unknown = sorted(set(self.feature_groups) - set(known))
        if unknown or not self.feature_groups:
            raise ValueError(f"feature_groups must be among {list(known)}, got {unknown or []}")
        if not self.compartments or set(self.compartments) - set(COMPARTMENTS):
            raise ValueError(f"compartments must be among {list(COMPARTMENTS)}")
        if self.nucleus_diameter <= 0:
            raise ValueError(f"nucleus_diameter must be > 0, got {self.nucleus_diameter}")


# --------------------------------------------------------------------------- measurements


def _channel_column(compartment: str, key: str, channel: str, group: str) -> str:
    """CellProfiler's name of a per-channel cp-measure key: the channel after the feature."""
    category, feature, *rest = (f"Texture_{key}" if group == "texture" else key).split("_")
    return "_".join([compartment, category, feature, channel, *rest])


def _pair_column(compartment: str, key: str, first: str, second: str) -> str:
    """CellProfiler's name of a correlation key; ``_1``/``_2`` keys are the two orders."""
    stem, _, order = key.rpartition("_")
    if order == "2":
        return f"{compartment}_{stem}_{second}_{first}"
    if order == "1":
        return f"{compartment}_{stem}_{first}_{second}"
    return f"{compartment}_{key.replace('Pearson', 'Correlation')}_{first}_{second}"


def _per_object(
    fn: Callable[..., Mapping[Hashable, object]],
    labels: np.ndarray,
    n: int,
    before: tuple[np.ndarray, ...] = (),
    after: tuple[np.ndarray | None, ...] = (),
    params: Mapping[str, object] | None = None,
) -> Iterator[tuple[Hashable, np.ndarray]]:
    """``fn(*before, labels, *after, **params)`` per object 1..n; objects without pixels: NaN.

    cp-measure wants contiguous labels, so labels with no pixels (a cell without
    cytoplasm) are closed up for the call and their rows filled with NaN afterwards.
    """
    present = np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1] > 0
    if not present.any():
        return
    if not present.all():
        lut = np.zeros(n + 1, labels.dtype)
        lut[1:][present] = np.arange(1, int(present.sum()) + 1)
        labels = lut[labels]
    for key, values in fn(*before, labels, *after, **(params or {})).items():
        full = np.full(n, np.nan)
        full[present] = np.asarray(values, dtype=np.float64)
        yield key, full


def _compartments(
    nuclei: np.ndarray, cells: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Object ids (cells that have a nucleus) and each compartment relabelled 1..n."""
    ids = np.intersect1d(np.unique(cells), np.unique(nuclei))
    ids = ids[ids > 0]
    lut = np.zeros(int(max(cells.max(), nuclei.max())) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    cell, nucleus = lut[cells], lut[nuclei]
    shrunk = np.where(find_boundaries(nucleus, mode="inner"), 0, nucleus)
    masks = {"Cells": cell, "Nuclei": nucleus, "Cytoplasm": np.where(shrunk > 0, 0, cell)}
    return ids, {name: masks[name] for name in names}


def _channel_groups(
    image: np.ndarray,
    channels: Sequence[str],
    masks: Mapping[str, np.ndarray],
    n: int,
    groups: Sequence[str],
    texture_scales: Sequence[int],
    core: Mapping[str, Callable[..., Mapping[str, object]]],
) -> Iterator[tuple[str, np.ndarray]]:
    """Per-channel groups; granularity and radial distribution share their label work."""
    if "granularity" in groups:
        params = GROUP_PARAMS.get("granularity", {})
        for c, channel in enumerate(channels):
            shared = granularity_by_compartment(masks, n, image[c], **params)
            for compartment, values in shared.items():
                for key, v in values.items():
                    yield _channel_column(compartment, key, channel, "granularity"), v
    for compartment, labels in masks.items():
        if "radial_distribution" in groups:
            for (c, key), v in _per_object(lambda lab: _radial_all_channels(lab, image), labels, n):
                yield _channel_column(compartment, key, channels[c], "radial_distribution"), v
        for group in (g for g in CHANNEL_GROUPS if g in groups and g not in SHARED_GROUPS):
            scales = texture_scales if group == "texture" else [None]
            for (c, channel), scale in itertools.product(enumerate(channels), scales):
                params = {
                    **GROUP_PARAMS.get(group, {}),
                    **({} if scale is None else {"scale": scale}),
                }
                for key, v in _per_object(core[group], labels, n, after=(image[c],), params=params):
                    if not key.startswith(POSITIONAL):
                        yield _channel_column(compartment, key, channel, group), v


def _radial_all_channels(
    labels: np.ndarray, image: np.ndarray
) -> dict[tuple[int, str], np.ndarray]:
    """Radial distribution of every plane of ``image`` on one object set (contiguous labels)."""
    geometry = radial_geometry(labels)
    return {
        (c, key): v for c in range(len(image)) for key, v in radial_features(geometry, image[c])
    }


def _measure(
    image: np.ndarray,
    channels: Sequence[str],
    masks: Mapping[str, np.ndarray],
    n: int,
    groups: Sequence[str],
    texture_scales: Sequence[int],
) -> dict[str, np.ndarray]:
    """Every requested cp-measure feature of every compartment, keyed by column name."""
    # cp-measure's numba texture: the numpy backend's values (to ~1e-5), ~100x faster
    core = {**get_core_measurements(sanitize=False), "texture": get_texture}
    corr = get_correlation_measurements(sanitize=False)
    pairs = list(itertools.combinations(range(len(channels)), 2))
    out: dict[str, np.ndarray] = {}
    with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # NaN: undefined
        for compartment, labels in masks.items():
            for group in (g for g in SHAPE_GROUPS if g in groups):
                params = GROUP_PARAMS.get(group)
                for key, v in _per_object(core[group], labels, n, after=(None,), params=params):
                    if not key.startswith(POSITIONAL):
                        out[f"{compartment}_AreaShape_{key}"] = v
        out.update(_channel_groups(image, channels, masks, n, groups, texture_scales, core))
        for (compartment, labels), group, (i, j) in itertools.product(
            masks.items(), (g for g in CORRELATION_GROUPS if g in groups), pairs
        ):
            before, params = (image[i], image[j]), GROUP_PARAMS.get(group)
            for key, v in _per_object(corr[group], labels, n, before=before, params=params):
                out[_pair_column(compartment, key, channels[i], channels[j])] = v
    return out


@lru_cache(maxsize=8)
def feature_names(
    channels: tuple[str, ...],
    groups: tuple[str, ...] = FEATURE_GROUPS,
    compartments: tuple[str, ...] = COMPARTMENTS,
    texture_scales: tuple[int, ...] = (3,),
) -> tuple[str, ...]:
    """Feature columns :func:`measure_site` returns, in order (measured on a dummy cell)."""
    yy, xx = np.mgrid[:48, :48]
    r2 = (yy - 24) ** 2 + (xx - 24) ** 2
    nuclei, cells = (r2 < 64).astype(np.int32), (r2 < 400).astype(np.int32)
    rng = np.random.default_rng(0)
    image = rng.random((len(channels), 48, 48), dtype=np.float32)
    masks = _compartments(nuclei, cells, compartments)[1]
    return tuple(_measure(image, channels, masks, 1, groups, texture_scales))


def measure_site(
    image: np.ndarray,
    channels: Sequence[str],
    nuclei: np.ndarray,
    cells: np.ndarray,
    groups: Sequence[str] = FEATURE_GROUPS,
    compartments: Sequence[str] = COMPARTMENTS,
    texture_scales: Sequence[int] = (3,),
) -> pd.DataFrame:
    """Measure every cell of one site with cp-measure.

    Parameters
    ----------
    image
        (C, H, W) float intensities in [0, 1] (as :func:`read_scaled_site` returns).
    channels
        Names of the planes of ``image``.
    nuclei, cells
        Label images with shared labels (a cell has its nucleus' label); cells without a
        nucleus label, and nuclei without a cell, are not measured.
    groups, compartments, texture_scales
        What to measure; see :class:`CellProfilerConfig`.

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``Metadata_ObjectNumber`` (the label) and the columns of
        :func:`feature_names`, float64 (NaN where cp-measure leaves a value undefined).
    """
    ids, masks = _compartments(nuclei, cells, compartments)
    columns = feature_names(tuple(channels), tuple(groups), tuple(compartments),
                            tuple(texture_scales))  # fmt: skip
    if len(ids) == 0:
        return pd.DataFrame(columns=[OBJECT, *columns], dtype=np.float64)
    values = _measure(image, channels, masks, len(ids), groups, texture_scales)
    undefined = np.full(len(ids), np.nan)  # a compartment without pixels in any cell
    matrix = np.column_stack([values.get(column, undefined) for column in columns])
    table = pd.DataFrame(matrix.astype(np.float64, copy=False), columns=list(columns))
    table.insert(0, OBJECT, ids)
    return table


def site_features(
    image: np.ndarray, channels: Sequence[str], otsu: float | None, cfg: CellProfilerConfig
) -> pd.DataFrame:
    """Segment one scaled site (:func:`segment_site`) and measure its cells."""
    nuclei, cells = segment_site(image, channels, otsu, cfg.nucleus_diameter,
                                 cfg.cytoplasm_channel, cfg.exclude_border)  # fmt: skip
    return measure_site(image, channels, nuclei, cells, cfg.feature_groups, cfg.compartments,
                        cfg.texture_scales)  # fmt: skip


def well_features(cells: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.Series:
    """Median of every feature over the cells of all sites of a well (NaN without cells)."""
    stacked = [c[list(columns)] for c in cells if len(c)]
    if not stacked:
        return pd.Series(np.nan, index=list(columns), dtype=np.float64)
    return pd.concat(stacked, ignore_index=True).median(skipna=True)


def measure_plate(
    manifest: str | Path,
    out: str | Path,
    cfg: CellProfilerConfig | None = None,
    channels: Sequence[str] = CHANNELS,
    threads: int = 1,
) -> None:
    """Write one row of CellProfiler-style features per well of a preprocessed plate.

    Parameters
    ----------
    manifest
        The plate's manifest (docs/CONTRACTS.md); site paths are relative to its folder.
    out
        Parquet written atomically: ``WELL_KEYS``, ``Metadata_n_sites``,
        ``Metadata_cell_count`` (cells measured), then the median of every feature over
        the cells of the well's sites (NaN for a well without cells, logged).
    cfg
        Segmentation and measurement settings; None = the defaults (JUMP 20x).
    channels
        Expected channel names of the sites, in their plane order.
    threads
        Sites segmented and measured at once.
    """
    cfg = cfg or CellProfilerConfig()
    if not {DNA, cfg.cytoplasm_channel} <= set(channels):
        raise ValueError(f"channels {list(channels)} lack {DNA} or {cfg.cytoplasm_channel}")
    sites = pd.read_parquet(manifest).sort_values([*WELL_KEYS, SITE], ignore_index=True)
    found, expected = set(sites["channels"]), ",".join(channels)
    if found != {expected}:
        raise ValueError(f"{manifest}: sites have channels {sorted(found)}, expected {expected!r}")
    root = Path(manifest).parent
    columns = feature_names(tuple(channels), cfg.feature_groups, cfg.compartments,
                            cfg.texture_scales)  # fmt: skip

    def measure(i: int) -> pd.DataFrame:
        row = sites.iloc[i]
        image = read_scaled_site(root / row["path"])
        return site_features(image, channels, float(row["dna_otsu"]), cfg)

    per_site = imap_bounded(measure, range(len(sites)), threads)
    rows = []
    for keys, group in sites.groupby(list(WELL_KEYS), sort=False, dropna=False):
        cells = [next(per_site) for _ in range(len(group))]  # sites are sorted by well
        n_cells = sum(len(c) for c in cells)
        if n_cells == 0:
            log.warning("%s well %s: no cells segmented in its %d sites; its features are NaN",
                        manifest, keys[-1], len(group))  # fmt: skip
        rows.append({**dict(zip(WELL_KEYS, keys, strict=True)), N_SITES: len(group),
                     CELL_COUNT: n_cells, **well_features(cells, columns)})  # fmt: skip
    wells = pd.DataFrame(rows, columns=[*WELL_KEYS, N_SITES, CELL_COUNT, *columns])
    write_parquet(wells, out)
    log.info("%s: %d wells, %d features, %d cells", manifest, len(wells), len(columns),
             int(wells[CELL_COUNT].sum()))  # fmt: skip
