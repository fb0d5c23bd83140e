"""Image I/O: header checks, streaming plate reads, intensity histograms and clipping.

Raw channel images are greyscale uint8 or uint16 TIFF or PNG planes (JUMP images are 16-bit);
float, signed, RGB and multi-plane images are refused with the fix. Histograms use one bin per
integer intensity in [0, 65535], so percentiles of raw data are exact and those of
illumination-corrected (float) data are within one intensity unit.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from paintssl.inputs import InputError, parse_load_data, read_load_data
from paintssl.preprocess.codec import U16_MAX

N_BINS = 65536
TIFF_SUFFIXES = (".tif", ".tiff")
MAX_LISTED = 10
PIXEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
PNG_DTYPES = {"L": "uint8", "I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16"}
MISSING = "does not exist"
REPLACE = "re-export it as a single-plane greyscale uint16 (or uint8) TIFF"
TO_UINT16 = "convert it to 16-bit greyscale (uint16, 0-65535) TIFF; float images are not accepted"
RESTORE = "fix its PathName_*/FileName_* cells in load_data.csv or restore the file"
BadSitePolicy = Literal["error", "skip"]
"""``qc.on_bad_site``: an unusable site fails the plate (error) or is left out (skip)."""

T = TypeVar("T")
R = TypeVar("R")


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype, list[str]]:
    """Shape (leading singleton axes dropped), dtype and structural problems of a TIFF."""
    problems = []
    with tifffile.TiffFile(path) as tif:
        page, series = tif.pages[0], tif.series[0]
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        ends = zip(page.dataoffsets, page.databytecounts, strict=True)
        end = max((offset + n for offset, n in ends), default=0)
        if page.samplesperpixel != 1:
            problems.append(f"has {page.samplesperpixel} samples per pixel (RGB or multi-sample)")
    size = path.stat().st_size
    if end > size:
        problems.append(f"is truncated: its image data ends at byte {end}, the file has {size}")
    return shape, dtype, problems


def _png_header(path: Path) -> tuple[tuple[int, ...], np.dtype | None, list[str]]:
    """Shape, dtype (None when unsupported) and problems of a PNG, from its header."""
    with Image.open(path) as img:
        mode, (width, height) = img.mode, img.size
    if mode in PNG_DTYPES:
        return (height, width), np.dtype(PNG_DTYPES[mode]), []
    return (height, width), None, [f"has PNG mode {mode}; expected greyscale L or I;16"]


def image_problems(
    path: str | Path, header: bool = True
) -> tuple[tuple[int, ...] | None, list[str]]:
    """Check one channel image from its header (TIFF or PNG); never decodes pixels.

    Parameters
    ----------
    path
        The image.
    header
        False: only check that the file exists and is not empty (illum ``.npy`` files).

    Returns
    -------
    tuple
        The 2-D shape (None when the image is not a readable 2-D plane) and the problems:
        missing, empty, unreadable, truncated, RGB or multi-plane, not uint8/uint16.
    """
    path = Path(path)
    if not path.is_file():
        return None, [MISSING]
    if path.stat().st_size == 0:
        return None, ["is empty (0 bytes)"]
    if not header:
        return None, []
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            shape, dtype, problems = _tiff_header(path)
        elif suffix == ".png":
            shape, dtype, problems = _png_header(path)
        else:
            return None, [f"has unsupported type {path.suffix!r} (use TIFF or PNG)"]
    except Exception as err:  # any parser error means the same to the user
        return None, [f"is not a readable image ({type(err).__name__}: {err})"]
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    if dtype is not None and dtype not in PIXEL_DTYPES:
        kind = "float" if dtype.kind == "f" else "integer" if dtype.kind in "iu" else "other"
        problems.append(f"has {kind} pixel type {dtype}; expected uint8 or uint16")
    if len(shape) != 2 and not any("samples per pixel" in p for p in problems):
        problems.append(f"has shape {shape}; expected one 2-D greyscale plane")
    if 0 in shape:
        problems.append(f"has shape {shape}, no pixels")
    return (shape if len(shape) == 2 and 0 not in shape else None), problems


def image_fix(problem: str) -> str:
    """Return the fix of one :func:`image_problems` problem of a raw channel image."""
    if problem == MISSING:
        return RESTORE
    return TO_UINT16 if problem.startswith("has float") else REPLACE


def _decode(path: Path) -> np.ndarray:
    if path.suffix.lower() in TIFF_SUFFIXES:
        return tifffile.imread(path)
    return iio.imread(path)


def read_channel_image(path: str | Path) -> np.ndarray:
    """Read one channel of one site as a 2-D uint8 or uint16 array (TIFF or PNG).

    The header is checked first (:func:`image_problems`); leading singleton axes (e.g. a
    (1, H, W) TIFF) are dropped. Raises :class:`InputError` naming the file, the problem and
    the fix when it is missing, empty, truncated, unreadable, RGB, multi-plane or not
    uint8/uint16.
    """
    path = Path(path)
    _, problems = image_problems(path)
    if problems:
        fix = image_fix(problems[0])
        raise InputError(f"{path}: cannot read image, it {'; it '.join(problems)}; {fix}")
    try:
        image = _decode(path)
    except Exception as err:
        raise InputError(
            f"{path}: cannot read image ({type(err).__name__}: {err}); {REPLACE}"
        ) from err
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
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


def read_plate_table(
    load_data: str | Path, channels: Sequence[str], on_bad_site: BadSitePolicy
) -> pd.DataFrame:
    """Read a plate's load_data.csv; with ``error`` every listed file must exist.

    With ``skip``, a missing file is left to :func:`iter_plate_sites`, which leaves its site out.
    """
    read = read_load_data if on_bad_site == "error" else parse_load_data
    return read(load_data, channels)


def usual_shape(shapes: Iterable[tuple[int, ...] | None]) -> tuple[tuple[int, ...], int] | None:
    """Return the most common known shape and its count (None when no shape is known)."""
    counts = Counter(shape for shape in shapes if shape is not None)
    return counts.most_common(1)[0] if counts else None


def plate_shape(
    table: pd.DataFrame, channels: Sequence[str], threads: int = 1
) -> tuple[tuple[int, ...], int] | None:
    """Return the plate's usual site shape and its count, from its first channel's headers."""
    headers = imap_bounded(image_problems, table[f"path_{channels[0]}"], threads)
    return usual_shape(shape for shape, _ in headers)


def _load_site(paths: Sequence[str]) -> tuple[np.ndarray | None, list[str]]:
    """Stack one site's channel images; on failure return the problems instead."""
    planes, problems = [], []
    for path in paths:
        try:
            planes.append(read_channel_image(path))
        except InputError as err:
            problems.append(str(err))
    if not problems:
        problems = [
            f"{path}: image is all black (every pixel is 0); re-export the site's image or "
            f"remove the site from load_data.csv"
            for path, plane in zip(paths, planes, strict=True)
            if not plane.any()
        ]
    if problems:
        return None, problems
    if len({p.shape for p in planes}) > 1:
        shapes = ", ".join(f"{p} {img.shape}" for p, img in zip(paths, planes, strict=True))
        return None, [f"channels of one site differ in shape: {shapes}"]
    return np.stack(planes), []


def iter_plate_sites(
    table: pd.DataFrame,
    channels: Sequence[str],
    threads: int = 1,
    label: str = "plate",
    bad: dict[object, list[str]] | None = None,
    usual: tuple[tuple[int, ...], int] | None = None,
) -> Iterator[tuple[object, np.ndarray]]:
    """Yield ``(row label, (C, H, W) image)`` for every usable site of a load_data table.

    A site is unusable when one of its files cannot be read (:func:`read_channel_image`) or
    is all black, or when its shape differs within the site or from the plate's usual shape
    (the most common header shape of its first channel's files). With ``bad`` None, one
    :class:`InputError` lists every problem after the last site; otherwise such sites are
    left out and recorded as ``bad[row label] = problems``, and only a plate without any
    usable site raises. ``usual`` is :func:`plate_shape` when the caller has it already.
    """
    jobs = table[[f"path_{ch}" for ch in channels]].to_numpy().tolist()
    usual = usual or plate_shape(table, channels, threads)
    found: dict[object, list[str]] = {}
    sites = imap_bounded(_load_site, jobs, threads)
    for i, paths, (image, errors) in zip(table.index, jobs, sites, strict=True):
        if image is not None and usual is not None and image.shape[1:] != usual[0]:
            errors = [
                f"{paths[0]} (and its other channels): shape {image.shape[1:]} differs from "
                f"the plate's usual {usual[0]} ({usual[1]} sites)"
            ]
        if errors:
            found[i] = errors
            continue
        yield i, image
    if bad is not None:
        bad.update(found)
        if len(found) == len(table):
            raise InputError(
                f"{label}: none of its {len(table)} sites can be used (qc.on_bad_site: skip "
                f"left out all of them), e.g. {found[table.index[0]][0]}; fix the images or "
                f"the load_data.csv"
            )
    elif found:
        problems = [p for errors in found.values() for p in errors]
        shown = "\n  ".join(problems[:MAX_LISTED])
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise InputError(
            f"{label}: {len(problems)} problem(s) with the image files; replace them, or remove "
            f"these sites from the load_data.csv, or set qc.on_bad_site: skip to leave them "
            f"out:\n  {shown}{more}"
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
