"""The merged site image format and the cell rule, shared by every stage that reads sites.

A preprocessed site is one (C, H, W) uint16 TIFF; ``value / 65535`` is the clipped, scaled
intensity in [0, 1] and the channel names are stored in the TIFF metadata. The cell rule
decides which crops and tiles hold cells: DNA above ``CELL_THRESHOLD_FACTOR`` x the site's
Otsu threshold on at least ``CELL_MIN_FRACTION`` of the pixels (Kim et al. 2025).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from paintssl.inputs import InputError
from paintssl.tables import atomic_path

U16_MAX = 65535
CELL_THRESHOLD_FACTOR = 0.7
CELL_MIN_FRACTION = 0.01


def to_uint16(scaled: np.ndarray) -> np.ndarray:
    """Store [0, 1] intensities as uint16 (``round(x * 65535)``)."""
    return np.rint(np.clip(scaled, 0, 1) * U16_MAX).astype(np.uint16)


def write_site_tiff(path: str | Path, image: np.ndarray, channels: Sequence[str]) -> None:
    """Write a merged (C, H, W) uint16 site image atomically, channel names in its metadata."""
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[0] != len(channels):
        raise ValueError(
            f"expected a uint16 (C={len(channels)}, H, W) array, got {image.dtype} {image.shape}"
        )
    metadata = {"axes": "CYX", "channels": list(channels)}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, photometric="minisblack", metadata=metadata)


def read_site_tiff(path: str | Path) -> np.ndarray:
    """Read a merged site TIFF written by :func:`write_site_tiff` as (C, H, W) uint16."""
    image = tifffile.imread(path)
    if image.dtype != np.uint16 or image.ndim != 3:
        raise InputError(
            f"{path}: expected a (C, H, W) uint16 site TIFF, got {image.dtype} {image.shape}; "
            f"rerun preprocessing"
        )
    return image


def read_scaled_site(path: str | Path) -> np.ndarray:
    """Return a merged site as (C, H, W) float32 intensities in [0, 1]."""
    return read_site_tiff(path).astype(np.float32) / np.float32(U16_MAX)


def cell_mask(dna: Any, otsu: float) -> Any:
    """Pixels of a scaled DNA image (numpy array or torch tensor) that count as cells."""
    return dna > CELL_THRESHOLD_FACTOR * otsu


def has_cells(mask: Any) -> bool:
    """Return True when a crop's :func:`cell_mask` (numpy array or torch tensor) covers enough."""
    return int(mask.sum()) / math.prod(mask.shape) >= CELL_MIN_FRACTION
