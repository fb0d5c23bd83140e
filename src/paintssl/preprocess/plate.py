"""Per-plate preprocessing: illumination correction, clipping, merged TIFFs and a manifest.

The manifest holds per-site DNA quality numbers (Otsu threshold, foreground, cell count).

Two streaming passes over the plate keep memory bounded to a few sites: the first reads
every image (validating all files before anything is written) and accumulates per-channel
intensity histograms; the second clips, scales and writes each site.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

from paintssl.preprocess.codec import U16_MAX, to_uint16, write_site_tiff
from paintssl.preprocess.illum import apply_illum, load_illum, load_jump_illum
from paintssl.preprocess.images import (
    N_BINS,
    BadSitePolicy,
    channel_histograms,
    histogram_percentiles,
    imap_bounded,
    iter_plate_sites,
    plate_shape,
    read_plate_table,
    scale_to_unit,
)
from paintssl.tables import (
    BATCH,
    CHANNELS,
    DNA,
    LOAD_DATA_KEYS,
    PLATE,
    SITE,
    SOURCE,
    WELL,
    write_parquet,
    write_tsv,
)

log = logging.getLogger(__name__)

SKIPPED_COLUMNS: tuple[str, ...] = (*LOAD_DATA_KEYS, "load_data_line", "problems")
"""Columns of the skipped-sites table: the site, its line in load_data.csv, its problems."""


@dataclass(frozen=True)
class PreprocessConfig:
    """The ``preprocess`` section of the config.

    Attributes
    ----------
    illum : ``none``; ``compute`` (CellProfiler-style per-plate functions); or
        ``load_data`` (JUMP's own illum files named in load_data).
    clip_percentiles : plate-level per-channel percentiles (of all pixels) mapped to 0 and 1.
    """

    illum: Literal["none", "compute", "load_data"] = "none"
    clip_percentiles: tuple[float, float] = (0.01, 99.9)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_percentiles", tuple(self.clip_percentiles))


def dna_otsu(dna: np.ndarray) -> float:
    """Otsu threshold of a scaled [0, 1] DNA image (the image's value if it is constant)."""
    return float(threshold_otsu(dna)) if dna.min() < dna.max() else float(dna.max())


def count_nuclei(
    dna: np.ndarray,
    threshold: float,
    sigma: float = 2.0,
    min_area: int = 30,
    min_distance: int = 7,
) -> int:
    """Estimate the number of nuclei in a scaled DNA image.

    Foreground is the Gaussian-smoothed (``sigma`` px) image above ``threshold``; objects
    smaller than ``min_area`` px are dropped. Touching nuclei are split by counting peaks of
    the distance transform at least ``min_distance`` px apart (one per object at least).
    Defaults fit JUMP 20x images (nuclei ~25-40 px across).
    """
    smooth = ndi.gaussian_filter(dna.astype(np.float32), sigma)
    mask = remove_small_objects(smooth > threshold, max_size=min_area - 1)
    labels, n_objects = ndi.label(mask)
    if n_objects == 0:
        return 0
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, exclude_border=False)
    per_object = np.bincount(labels[tuple(peaks.T)], minlength=n_objects + 1)[1:]
    return int(np.maximum(per_object, 1).sum())


def _load_field(
    table: pd.DataFrame, channels: Sequence[str], illum: str | Path | None, mode: str
) -> np.ndarray | None:
    """Return the field ``mode`` asks for: none, computed (``illum``) or JUMP's files."""
    if (mode == "compute") != (illum is not None):
        raise ValueError(f"illum mode {mode!r} needs an illumination file exactly when 'compute'")
    if mode == "compute":
        return load_illum(illum, channels)
    return load_jump_illum(table, channels) if mode == "load_data" else None


def _site_row(
    image: np.ndarray, channels: Sequence[str], nuclei: dict[str, float]
) -> dict[str, object]:
    """Per-site QC numbers of a scaled (C, H, W) uint16 image."""
    scaled = image / np.float32(U16_MAX)
    dna = scaled[list(channels).index(DNA)]
    threshold = dna_otsu(dna)
    row: dict[str, object] = {
        "height": image.shape[1],
        "width": image.shape[2],
        "dna_otsu": threshold,
        "foreground_fraction": float((dna > threshold).mean()),
        "cell_count": count_nuclei(dna, threshold, **nuclei),
    }
    for ch, plane in zip(channels, scaled, strict=True):
        row[f"mean_{ch}"] = float(plane.mean(dtype=np.float64))
        row[f"std_{ch}"] = float(plane.std(dtype=np.float64))
    return row


def skipped_sites(table: pd.DataFrame, bad: dict[object, list[str]]) -> pd.DataFrame:
    """One row per site left out (``bad``: row label -> problems), :data:`SKIPPED_COLUMNS`."""
    rows = [
        [*table.loc[i, list(LOAD_DATA_KEYS)], int(i) + 2, " | ".join(problems)]
        for i, problems in bad.items()
    ]
    return pd.DataFrame(rows, columns=list(SKIPPED_COLUMNS))


def _clip_bounds(
    sites: Iterable[tuple[int, np.ndarray]], n_channels: int, percentiles: Sequence[float]
) -> np.ndarray:
    """Per-channel (low, high) plate percentiles from streamed sites, shape (C, 2)."""
    hist = np.zeros((n_channels, N_BINS), dtype=np.int64)
    for _, image in sites:
        hist += channel_histograms(image)
    return np.stack([histogram_percentiles(h, percentiles) for h in hist])


def _process_site(
    item: tuple[int, np.ndarray],
    table: pd.DataFrame,
    out_sites: Path,
    manifest_dir: Path,
    channels: Sequence[str],
    bounds: np.ndarray,
    nuclei: dict[str, float],
) -> dict[str, object]:
    """Scale, write and measure one site; returns its manifest row (without plate columns)."""
    i, image = item
    merged = to_uint16(scale_to_unit(image, bounds[:, 0], bounds[:, 1]))
    well, site = table.at[i, WELL], table.at[i, SITE]
    site_path = out_sites / f"{well}_{site}.tiff"
    write_site_tiff(site_path, merged, channels)
    return {
        PLATE: table.at[i, PLATE],
        WELL: well,
        SITE: site,
        "path": Path(os.path.relpath(site_path, manifest_dir)).as_posix(),
        "channels": ",".join(channels),
        **_site_row(merged, channels, nuclei),
    }


def preprocess_plate(
    load_data: str | Path,
    source: str,
    batch: str,
    out_manifest: str | Path,
    out_sites: str | Path,
    cfg: PreprocessConfig,
    channels: Sequence[str] = CHANNELS,
    illum: str | Path | None = None,
    nucleus_sigma: float = 2.0,
    min_nucleus_area: int = 30,
    nucleus_min_distance: int = 7,
    threads: int = 1,
    on_bad_site: BadSitePolicy = "error",
    out_skipped: str | Path | None = None,
) -> None:
    """Turn one plate's per-channel images into merged, scaled site TIFFs and a manifest.

    Parameters
    ----------
    load_data
        The plate's JUMP-style load_data.csv (see :func:`paintssl.inputs.read_load_data`).
    source, batch
        Written to ``Metadata_Source`` / ``Metadata_Batch`` of the manifest.
    out_manifest
        Manifest Parquet (columns in docs/CONTRACTS.md), written last and atomically.
    out_sites
        Folder for one ``<well>_<site>.tiff`` per site: (C, H, W) uint16, ``value / 65535``
        is the clipped, scaled intensity. Removed on failure if this call created it.
    channels
        Channel names in load_data and the order of the merged TIFF planes; must hold DNA.
    cfg
        Clip percentiles and the illumination correction to apply.
    illum
        The ``.npy`` of :func:`paintssl.preprocess.illum.compute_illum` when ``cfg.illum`` is
        ``compute``.
    nucleus_sigma, min_nucleus_area, nucleus_min_distance
        Cell-count settings, see :func:`count_nuclei`.
    threads
        Threads reading images, and threads scaling, writing and measuring sites.
    on_bad_site
        ``qc.on_bad_site``: ``error`` fails on the first pass, naming every unusable site
        (missing, empty, truncated, unreadable, all black, or shaped unlike the plate);
        ``skip`` leaves those sites out, logs how many, and lists them in ``out_skipped``.
    out_skipped
        TSV of the sites left out (:func:`skipped_sites`; header only when none), written
        just before the manifest.
    """
    if DNA not in channels:
        raise ValueError(f"channels {list(channels)} must include {DNA} for the QC columns")
    table = read_plate_table(load_data, channels, on_bad_site)
    field = _load_field(table, channels, illum, cfg.illum)
    illum_name, label = str(illum or "JUMP illum files"), str(load_data)
    usual = plate_shape(table, channels, threads)  # headers read once for both passes

    def corrected_sites(
        sites: pd.DataFrame, bad: dict[object, list[str]] | None = None
    ) -> Iterator[tuple[object, np.ndarray]]:
        passes = iter_plate_sites(sites, channels, threads, label=label, bad=bad, usual=usual)
        for i, image in passes:
            yield i, image if field is None else apply_illum(image, field, illum_name)

    bad: dict[object, list[str]] | None = None if on_bad_site == "error" else {}
    bounds = _clip_bounds(corrected_sites(table, bad), len(channels), cfg.clip_percentiles)
    log.info("%s: clip values %s", label, dict(zip(channels, bounds.tolist(), strict=True)))
    skipped = skipped_sites(table, bad or {})
    if on_bad_site == "skip":
        log.warning("%s: skipped %d of %d sites (qc.on_bad_site: skip)", label, len(skipped),
                    len(table))  # fmt: skip
        for row in skipped.itertuples(index=False):
            log.warning("  skipped line %d: %s", row.load_data_line, row.problems)
    out_manifest, out_sites = Path(out_manifest), Path(out_sites)
    out_manifest.unlink(missing_ok=True)
    if out_skipped is not None:
        Path(out_skipped).unlink(missing_ok=True)
    created = not out_sites.exists()
    out_sites.mkdir(parents=True, exist_ok=True)
    nuclei = {
        "sigma": nucleus_sigma,
        "min_area": min_nucleus_area,
        "min_distance": nucleus_min_distance,
    }
    process = partial(
        _process_site,
        table=table,
        out_sites=out_sites,
        manifest_dir=out_manifest.parent,
        channels=channels,
        bounds=bounds,
        nuclei=nuclei,
    )
    try:
        rows = pd.DataFrame(
            imap_bounded(process, corrected_sites(table.drop(index=list(bad or {}))), threads)
        )
        manifest = pd.concat(
            [
                pd.DataFrame({SOURCE: source, BATCH: batch}, rows.index),
                rows,
            ],
            axis=1,
        )
        for j, ch in enumerate(channels):
            manifest[f"clip_low_{ch}"] = float(bounds[j, 0])
            manifest[f"clip_high_{ch}"] = float(bounds[j, 1])
        if out_skipped is not None:
            write_tsv(skipped, out_skipped)
        write_parquet(manifest, out_manifest)
    except BaseException:
        if created:
            shutil.rmtree(out_sites, ignore_errors=True)
        if out_skipped is not None:
            Path(out_skipped).unlink(missing_ok=True)
        raise
    log.info("%s: wrote %d sites to %s", label, len(manifest), out_sites)
