"""Image I/O, plate streaming, histogram percentiles and clipping/scaling."""

import json
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from paintssl.inputs import InputError
from paintssl.preprocess.codec import read_site_tiff, to_uint16, write_site_tiff
from paintssl.preprocess.images import (
    channel_histograms,
    histogram_percentiles,
    imap_bounded,
    iter_plate_sites,
    read_channel_image,
    scale_to_unit,
)


def test_read_tiff_png_and_singleton_axes(tmp_path: Path) -> None:
    image = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    tifffile.imwrite(tmp_path / "a.tiff", image[None], photometric="minisblack")
    iio.imwrite(tmp_path / "a.png", image)
    for name in ("a.tiff", "a.png"):
        out = read_channel_image(tmp_path / name)
        assert out.dtype == np.uint16
        np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("bad.tiff", b"not a tiff at all", "cannot read image"),
        ("rgb.tiff", np.zeros((4, 4, 3), np.uint8), "3 samples per pixel"),
        ("nan.tiff", np.full((4, 4), np.nan, np.float32), "float pixel type float32"),
        ("missing.tiff", None, "cannot read image"),
        ("a.jpg", b"x", "unsupported type '.jpg'"),
    ],
)
def test_read_errors_name_the_file(tmp_path: Path, name: str, content, pattern: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        tifffile.imwrite(path, content)
    with pytest.raises(InputError, match=pattern) as err:
        read_channel_image(path)
    assert str(path) in str(err.value)


def test_site_tiff_round_trip(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 65536, (5, 6, 7), dtype=np.uint16)
    channels = ["DNA", "ER", "RNA", "AGP", "Mito"]
    write_site_tiff(tmp_path / "s.tiff", image, channels)
    np.testing.assert_array_equal(read_site_tiff(tmp_path / "s.tiff"), image)
    with tifffile.TiffFile(tmp_path / "s.tiff") as tif:
        assert json.loads(tif.pages[0].description)["channels"] == channels
    with pytest.raises(ValueError, match="uint16"):
        write_site_tiff(tmp_path / "t.tiff", image.astype(np.float32), channels)


def test_histogram_percentiles_match_numpy_exactly_for_integers() -> None:
    rng = np.random.default_rng(1)
    data = rng.gamma(2.0, 800.0, (3, 50, 40)).astype(np.uint16)
    q = [0.01, 1, 50, 99.9, 100]
    hist = channel_histograms(data)
    assert hist.shape == (3, 65536)
    for plane, h in zip(data, hist, strict=True):
        np.testing.assert_allclose(histogram_percentiles(h, q), np.percentile(plane, q), atol=1e-9)


def test_histogram_percentiles_float_data_within_one_unit() -> None:
    data = np.random.default_rng(2).uniform(0, 3000, (1, 100, 100)).astype(np.float32)
    q = [0.01, 99.9]
    got = histogram_percentiles(channel_histograms(data)[0], q)
    assert np.abs(got - np.percentile(data[0], q)).max() <= 1.0


def test_scale_to_unit_known_values_and_saturation() -> None:
    image = np.array([[[0, 100, 150, 200, 65535]], [[5, 5, 5, 5, 5]]], dtype=np.uint16)
    scaled = scale_to_unit(image, low=[100, 5], high=[200, 5])
    assert scaled.dtype == np.float32
    assert scaled.shape == image.shape
    np.testing.assert_array_equal(scaled[0, 0], [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(scaled[1], 0.0)  # constant channel -> zeros, not NaN
    stored = to_uint16(scaled)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored[0, 0], [0, 0, 32768, 65535, 65535])


def write_site(folder: Path, name: str, shapes: list[tuple[int, int]]) -> dict[str, str]:
    row = {}
    for ch, shape in zip(("DNA", "ER"), shapes, strict=True):
        path = folder / f"{name}_{ch}.tiff"
        tifffile.imwrite(path, np.ones(shape, np.uint16))
        row[f"path_{ch}"] = str(path)
    return row


def test_iter_plate_sites_lists_every_bad_site(tmp_path: Path) -> None:
    table = pd.DataFrame(
        [
            write_site(tmp_path, "good", [(4, 4), (4, 4)]),
            write_site(tmp_path, "mixed", [(4, 4), (4, 5)]),
            write_site(tmp_path, "other", [(6, 6), (6, 6)]),
            write_site(tmp_path, "also_good", [(4, 4), (4, 4)]),
        ]
    )
    (tmp_path / "also_good_ER.tiff").write_bytes(b"corrupt")
    sites = iter_plate_sites(table, ["DNA", "ER"], label="plate P")
    i, image = next(sites)
    assert i == 0
    assert image.shape == (2, 4, 4)
    with pytest.raises(InputError, match=r"plate P: 3 problem\(s\)") as err:
        next(sites)  # the bad sites are skipped and reported together at the end
    message = str(err.value)
    for bad in ("mixed_ER.tiff (4, 5)", "other_DNA.tiff (and its other", "also_good_ER.tiff"):
        assert bad in message


def test_imap_bounded_keeps_order_with_threads() -> None:
    def slow_square(x: int) -> int:
        time.sleep(0.002 * (x % 3))
        return x * x

    assert list(imap_bounded(slow_square, range(20), threads=3)) == [x * x for x in range(20)]
