"""Per-plate illumination functions (CellProfiler style) and JUMP's own illum files.

An illumination function is a smooth (C, H, W) float32 field with values >= 1; the corrected
image is ``raw / illum``, so corrected intensities never exceed the raw ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.transform import resize

from paintssl.inputs import InputError
from paintssl.preprocess.images import BadSitePolicy, iter_plate_sites, read_plate_table
from paintssl.tables import CHANNELS, atomic_path

log = logging.getLogger(__name__)


def illum_function(
    mean_image: np.ndarray,
    working_size: int = 128,
    median_fraction: float = 0.125,
    sigma_fraction: float = 0.0625,
    robust_percentile: float = 2.0,
) -> np.ndarray:
    """Smooth a plate's mean image of one channel into an illumination function.

    The mean image is resized so its longer side is at most ``working_size`` pixels, median
    filtered (window ``median_fraction`` of the shorter side) to remove residual cells,
    Gaussian smoothed (sigma ``sigma_fraction`` of the shorter side), resized back, divided
    by its ``robust_percentile`` percentile and floored at 1 (CellProfiler's robust-minimum
    rescaling).

    Returns
    -------
    numpy.ndarray
        Float32 array of the input's shape, values >= 1.
    """
    height, width = mean_image.shape
    factor = max(1.0, max(height, width) / working_size)
    small_shape = (max(1, round(height / factor)), max(1, round(width / factor)))
    small = resize(mean_image.astype(np.float64), small_shape, order=1, anti_aliasing=factor > 1)
    side = min(small_shape)
    small = ndi.median_filter(small, size=max(3, round(median_fraction * side)), mode="reflect")
    small = ndi.gaussian_filter(small, sigma=max(1.0, sigma_fraction * side), mode="reflect")
    field = resize(small, (height, width), order=1) if factor > 1 else small
    floor = np.percentile(field, robust_percentile)
    if floor <= 0:
        raise ValueError("illumination function is not positive; the channel looks empty")
    return np.maximum(field / floor, 1.0).astype(np.float32)


def compute_illum(
    load_data: str | Path | pd.DataFrame,
    out_npy: str | Path,
    channels: Sequence[str] = CHANNELS,
    working_size: int = 128,
    median_fraction: float = 0.125,
    sigma_fraction: float = 0.0625,
    robust_percentile: float = 2.0,
    threads: int = 1,
    on_bad_site: BadSitePolicy = "error",
) -> None:
    """Compute a plate's illumination functions from the mean of all its sites.

    Parameters
    ----------
    load_data
        The plate's load_data.csv, or the table :func:`paintssl.inputs.read_load_data` made.
    out_npy
        Output (C, H, W) float32 ``.npy`` in ``channels`` order.
    working_size, median_fraction, sigma_fraction, robust_percentile
        Smoothing settings, see :func:`illum_function`.
    threads
        Threads reading images.
    on_bad_site
        ``qc.on_bad_site``: with ``skip``, unusable sites are left out of the mean (and
        logged), as preprocessing leaves them out.
    """
    if isinstance(load_data, pd.DataFrame):
        table, label = load_data, "load_data table"
    else:
        table = read_plate_table(load_data, channels, on_bad_site)
        label = str(load_data)
    total, n_sites = None, 0
    bad: dict[object, list[str]] | None = None if on_bad_site == "error" else {}
    for _, image in iter_plate_sites(table, channels, threads, label=label, bad=bad):
        total = image.astype(np.float64) if total is None else total + image
        n_sites += 1
    assert total is not None  # iter_plate_sites raised if no site was readable
    if bad:
        log.warning("%s: %d unusable sites left out of the illumination mean", label, len(bad))
    mean = total / n_sites
    field = np.stack(
        [
            illum_function(m, working_size, median_fraction, sigma_fraction, robust_percentile)
            for m in mean
        ]
    )
    with atomic_path(out_npy) as tmp, open(tmp, "wb") as handle:
        np.save(handle, field)
    log.info("illumination functions from %d sites: max %s", n_sites, field.max(axis=(1, 2)))


def _check_field(field: np.ndarray, source: str, n_channels: int) -> np.ndarray:
    if field.ndim != 3 or field.shape[0] != n_channels:
        raise InputError(
            f"{source}: illumination array has shape {field.shape}; expected "
            f"({n_channels}, H, W), one plane per configured channel"
        )
    if not np.isfinite(field).all() or field.min() <= 0:
        raise InputError(f"{source}: illumination values must be finite and > 0; recompute it")
    return field.astype(np.float32, copy=False)


def load_illum(path: str | Path, channels: Sequence[str] = CHANNELS) -> np.ndarray:
    """Load a (C, H, W) illumination array written by :func:`compute_illum`."""
    try:
        field = np.load(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read illumination .npy ({err}); recompute it") from err
    return _check_field(field, str(path), len(channels))


def load_jump_illum(table: pd.DataFrame, channels: Sequence[str] = CHANNELS) -> np.ndarray:
    """Stack JUMP's per-channel illum ``.npy`` files into a (C, H, W) float32 array.

    The files are named in a load_data table's ``illum_<Ch>`` columns (one per channel and plate).
    """
    planes = []
    for ch in channels:
        column = f"illum_{ch}"
        if column not in table.columns:
            raise InputError(
                f"load_data has no FileName_Illum{ch}/PathName_Illum{ch} columns; use JUMP's "
                f"load_data_with_illum.csv or turn off illumination from load_data"
            )
        files = table[column].unique()
        if len(files) != 1:
            raise InputError(
                f"load_data lists {len(files)} different illum files for {ch} "
                f"({', '.join(files[:3])}); one plate must use one illum file per channel"
            )
        try:
            planes.append(np.squeeze(np.load(files[0])))
        except (OSError, ValueError) as err:
            raise InputError(f"{files[0]}: cannot read illum .npy ({err})") from err
    if len({p.shape for p in planes}) > 1 or planes[0].ndim != 2:
        shapes = ", ".join(f"{ch}: {p.shape}" for ch, p in zip(channels, planes, strict=True))
        raise InputError(f"JUMP illum files must be 2-D and equal in shape; got {shapes}")
    return _check_field(np.stack(planes), "JUMP illum files", len(channels))


def apply_illum(image: np.ndarray, field: np.ndarray, source: str = "illumination") -> np.ndarray:
    """Correct a (C, H, W) site image: ``image / field`` as float32."""
    if image.shape != field.shape:
        raise InputError(
            f"{source}: illumination shape {field.shape} does not match the site images "
            f"{image.shape}; compute the illumination from this plate's images"
        )
    return image.astype(np.float32) / field
