"""Image I/O, streaming plate reads, intensity histograms and percentile clipping.

Raw intensities are assumed to lie in [0, 65535] (8- or 16-bit images, or float images in
the same units); histograms use one bin per integer intensity, so percentiles of integer
data are exact and those of float data are within one intensity unit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile

from paintssl.inputs import InputError
from paintssl.preprocess.codec import U16_MAX

N_BINS = 65536
TIFF_SUFFIXES = (".tif", ".tiff")
MAX_LISTED = 10

T = TypeVar("T")
R = TypeVar("R")


def _decode(path: Path) -> np.ndarray:
    if path.suffix.lower() in TIFF_SUFFIXES:
        return tifffile.imread(path)
    if path.suffix.lower() == ".png":
        return iio.imread(path)
    raise InputError(f"{path}: unsupported image type {path.suffix!r}; use TIFF or PNG")


def read_channel_image(path: str | Path) -> np.ndarray:
    """Read one channel of one site as a 2-D array (TIFF or PNG).

    Leading singleton axes (e.g. a (1, H, W) TIFF) are dropped. Raises :class:`InputError`
    naming the file when it is missing, unreadable, not 2-D, empty, or has NaN/inf values.
    """
    path = Path(path)
    try:
        image = _decode(path)
    except InputError:
        raise
    except Exception as err:
        raise InputError(
            f"{path}: cannot read image ({type(err).__name__}: {err}); replace or re-export it"
        ) from err
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2 or image.size == 0:
        raise InputError(
            f"{path}: image has shape {image.shape}; expected one non-empty 2-D grayscale plane"
        )
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InputError(f"{path}: unsupported pixel type {image.dtype}; use integer or float")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise InputError(f"{path}: image contains NaN or infinite values")
    return image


def imap_bounded(fn: Callable[[T], R], items: Iterable[T], threads: int = 1) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with at most ``2 * threads`` in flight."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _load_site(paths: Sequence[str]) -> tuple[np.ndarray | None, list[str]]:
    """Stack one site's channel images; on failure return the problems instead."""
    planes, problems = [], []
    for path in paths:
        try:
            planes.append(read_channel_image(path))
        except InputError as err:
            problems.append(str(err))
    if problems:
        return None, problems
    if len({p.shape for p in planes}) > 1:
        shapes = ", ".join(f"{p} {img.shape}" for p, img in zip(paths, planes, strict=True))
        return None, [f"channels of one site differ in shape: {shapes}"]
    return np.stack(planes), []


def iter_plate_sites(
    table: pd.DataFrame, channels: Sequence[str], threads: int = 1, label: str = "plate"
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row position, (C, H, W) image)`` for every site of a load_data table.

    Unreadable files and shapes that differ within a site or from the plate's first site are
    collected; after the last site one :class:`InputError` lists them all.
    """
    jobs = table[[f"path_{ch}" for ch in channels]].to_numpy().tolist()
    problems: list[str] = []
    plate_shape, first = None, ""
    for i, (image, errors) in enumerate(imap_bounded(_load_site, jobs, threads)):
        problems += errors
        if image is None:
            continue
        if plate_shape is None:
            plate_shape, first = image.shape[1:], jobs[i][0]
        if image.shape[1:] != plate_shape:
            problems.append(
                f"{jobs[i][0]} (and its other channels): shape {image.shape[1:]} differs from "
                f"the plate's {plate_shape} ({first})"
            )
            continue
        yield i, image
    if problems:
        shown = "\n  ".join(problems[:MAX_LISTED])
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise InputError(
            f"{label}: {len(problems)} problem(s) with the image files; replace or remove "
            f"these sites from the load_data.csv:\n  {shown}{more}"
        )


def intensity_bins(image: np.ndarray) -> np.ndarray:
    """Integer histogram bins of intensities: clipped to [0, 65535], floats floored."""
    if image.dtype in (np.uint8, np.uint16):
        return image.astype(np.uint16, copy=False)
    return np.clip(image, 0, U16_MAX).astype(np.uint16)


def channel_histograms(image: np.ndarray) -> np.ndarray:
    """Per-channel intensity histograms, shape (C, 65536) int64, of a (C, H, W) image."""
    return np.stack([np.bincount(intensity_bins(p).ravel(), minlength=N_BINS) for p in image])


def histogram_percentiles(hist: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Percentiles (0-100) of the data behind an integer-bin histogram.

    Uses the same linear interpolation as :func:`numpy.percentile`, so it is exact for
    integer data.
    """
    counts = np.cumsum(hist)
    n = int(counts[-1])
    if n == 0:
        raise ValueError("histogram is empty")
    pos = np.asarray(q, dtype=float) / 100 * (n - 1)
    below = np.floor(pos)
    lower = np.searchsorted(counts, below, side="right")
    upper = np.searchsorted(counts, np.minimum(below + 1, n - 1), side="right")
    return lower + (pos - below) * (upper - lower)


def scale_to_unit(image: np.ndarray, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    """Clip each channel of a (C, H, W) image to [low, high] and scale it to [0, 1] (float32).

    A channel with ``high <= low`` (constant over the plate) becomes all zeros.
    """
    lo = np.asarray(low, dtype=np.float32)[:, None, None]
    hi = np.asarray(high, dtype=np.float32)[:, None, None]
    span = np.where(hi > lo, hi - lo, np.inf).astype(np.float32)
    return (np.clip(image.astype(np.float32, copy=False), lo, hi) - lo) / span
