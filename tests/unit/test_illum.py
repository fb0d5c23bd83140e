"""Illumination functions: recovery of a known field, files, and correction."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from paintssl.inputs import InputError
from paintssl.preprocess.illum import (
    apply_illum,
    compute_illum,
    illum_function,
    load_illum,
    load_jump_illum,
)

SIZE = 64
CHANNELS = ("DNA", "ER")


def vignette(size: int = SIZE) -> np.ndarray:
    """A smooth multiplicative field, 1.0 in the corners up to ~1.6 near the centre."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    return 1.0 + 0.6 * np.exp(-((yy - 0.4) ** 2 + (xx - 0.55) ** 2) / 0.15)


def cells(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Flat background with a few bright random disks."""
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.full((size, size), 200.0)
    for cy, cx in rng.integers(0, size, (10, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9] += 1000
    return image


def flatness(image: np.ndarray) -> np.ndarray:
    """1st and 99th percentile relative to the median."""
    return np.percentile(image, [1, 99]) / np.median(image)


def test_illum_function_recovers_a_known_field() -> None:
    rng = np.random.default_rng(0)
    field = vignette()
    mean = np.mean([cells(rng) * field for _ in range(50)], axis=0)
    illum = illum_function(mean)
    assert illum.dtype == np.float32
    assert illum.shape == field.shape
    assert illum.min() >= 1.0
    lo, hi = flatness(field / illum)
    assert lo > 0.85
    assert hi < 1.15
    assert hi - lo < 0.5 * (field.max() - field.min()) / np.median(field)


def test_illum_function_on_large_images_works_downsampled() -> None:
    field = vignette(600)
    illum = illum_function(field * 300, working_size=64)
    assert illum.shape == (600, 600)
    lo, hi = flatness(field / illum)
    assert lo > 0.95
    assert hi < 1.05


def write_plate(folder: Path, n_sites: int, field: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for s in range(n_sites):
        row = {}
        for k, ch in enumerate(CHANNELS):
            path = folder / f"s{s}_{ch}.tiff"
            tifffile.imwrite(path, (cells(rng) * field * (k + 1)).astype(np.uint16))
            row[f"path_{ch}"] = str(path)
        rows.append(row)
    return pd.DataFrame(rows)


def test_compute_illum_writes_a_field_that_flattens_images(tmp_path: Path) -> None:
    field = vignette()
    table = write_plate(tmp_path, 40, field)
    out = tmp_path / "illum" / "illum.npy"
    compute_illum(table, out, channels=CHANNELS, threads=2)
    illum = load_illum(out, CHANNELS)
    assert illum.shape == (2, SIZE, SIZE)
    assert illum.dtype == np.float32
    assert illum.min() >= 1.0
    background = np.stack([np.full((SIZE, SIZE), 200.0)] * 2) * field
    corrected = apply_illum(background.astype(np.uint16), illum)
    assert corrected.dtype == np.float32
    for plane in corrected:
        lo, hi = flatness(plane)
        assert lo > 0.85
        assert hi < 1.15


def test_load_illum_rejects_wrong_channel_count(tmp_path: Path) -> None:
    path = tmp_path / "illum.npy"
    np.save(path, np.ones((3, 4, 4), np.float32))
    with pytest.raises(InputError, match=r"illum\.npy: illumination array has shape \(3, 4, 4\)"):
        load_illum(path, CHANNELS)


def test_load_jump_illum_stacks_per_channel_files(tmp_path: Path) -> None:
    for k, ch in enumerate(CHANNELS):
        np.save(tmp_path / f"P_Illum{ch}.npy", np.full((4, 4), 1.0 + k))
    table = pd.DataFrame(
        {f"illum_{ch}": [str(tmp_path / f"P_Illum{ch}.npy")] * 3 for ch in CHANNELS}
    )
    field = load_jump_illum(table, CHANNELS)
    assert field.shape == (2, 4, 4)
    np.testing.assert_array_equal(field[:, 0, 0], [1.0, 2.0])
    table.loc[1, "illum_ER"] = str(tmp_path / "P_IllumDNA.npy")
    with pytest.raises(InputError, match="2 different illum files for ER"):
        load_jump_illum(table, CHANNELS)


def test_apply_illum_shape_mismatch_is_an_error() -> None:
    with pytest.raises(InputError, match=r"does not match the site images \(2, 4, 4\)"):
        apply_illum(np.ones((2, 4, 4), np.uint16), np.ones((2, 5, 5), np.float32), "x.npy")
