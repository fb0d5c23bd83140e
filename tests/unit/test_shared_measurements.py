"""Granularity and radial distribution with shared work equal cp-measure's own functions.

On a rendered synthetic site, segmented as the ``cellprofiler`` model does, every
compartment and channel is measured both ways. A cell that is all nucleus (so without
cytoplasm) checks that an object missing from a compartment is NaN, as cp-measure's mean
of no pixels is.
"""

import warnings

import numpy as np
import pytest
from cp_measure.core.measuregranularity import get_granularity
from cp_measure.core.measureobjectintensitydistribution import get_radial_distribution
from skimage.segmentation import find_boundaries

from paintssl.embed.cellprofiler import COMPARTMENTS, _compartments
from paintssl.embed.segment import segment_site
from paintssl.embed.shared_measurements import (
    _wedge_cv,
    granularity_by_compartment,
    radial_features,
    radial_geometry,
)
from paintssl.preprocess.plate import dna_otsu
from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.plate import plate_context, render_site
from paintssl.tables import CHANNELS, DNA

from .test_cellprofiler import SYNTHETIC_DIAMETER, scaled


@pytest.fixture(scope="module")
def site() -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """A rendered site's image, its compartments (labels 1..n) and n; object n has no
    cytoplasm (its cell is replaced by its nucleus)."""
    cfg = SyntheticConfig(site_size=224, sites_per_well=1)
    image = scaled(render_site(plate_context(cfg, "src01_b01_p01"), "C05", 1))
    otsu = dna_otsu(image[CHANNELS.index(DNA)])
    nuclei, cells = segment_site(image, CHANNELS, otsu, SYNTHETIC_DIAMETER, "RNA", True)
    last = int(cells.max())  # its cell: the nucleus less its boundary, as Cytoplasm removes
    inner = (nuclei == last) & ~find_boundaries(nuclei, mode="inner")
    cells = np.where((cells == last) & ~inner, 0, cells)
    ids, masks = _compartments(nuclei, cells, COMPARTMENTS)
    assert len(ids) >= 5
    assert not (masks["Cytoplasm"] == len(ids)).any()  # the object without cytoplasm
    return image, masks, len(ids)


def test_granularity_by_compartment_equals_one_cp_measure_call_per_compartment(
    site: tuple[np.ndarray, dict[str, np.ndarray], int],
) -> None:
    image, masks, n = site
    for c, channel in enumerate(CHANNELS):
        shared = granularity_by_compartment(masks, n, image[c])
        for name, labels in masks.items():
            present = np.unique(labels[labels > 0])  # cp-measure wants contiguous labels
            lut = np.zeros(n + 1, labels.dtype)
            lut[present] = np.arange(1, len(present) + 1)
            direct = get_granularity(lut[labels], image[c])
            assert set(direct) == set(shared[name])
            for key, values in direct.items():
                expected = np.full(n, np.nan)
                expected[present - 1] = values
                np.testing.assert_allclose(
                    shared[name][key], expected, rtol=1e-9, atol=1e-9,
                    err_msg=f"{name} {key} {channel}",
                )  # fmt: skip
    assert np.isnan(shared["Cytoplasm"]["Granularity_1"][n - 1])


def test_radial_features_equal_cp_measure_radial_distribution(
    site: tuple[np.ndarray, dict[str, np.ndarray], int],
) -> None:
    image, masks, _ = site
    labels = masks["Cells"]
    geometry = radial_geometry(labels)
    for c, channel in enumerate(CHANNELS):
        with warnings.catch_warnings(action="ignore", category=RuntimeWarning):
            direct = get_radial_distribution(labels, image[c])
            shared = dict(radial_features(geometry, image[c]))
        assert list(shared) == list(direct)
        for key, values in direct.items():
            np.testing.assert_array_equal(shared[key], values, err_msg=f"{key} {channel}")


def test_wedge_cv_has_the_bits_of_numpy_ma() -> None:
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, (200, 8)).astype(float)
    counts[:5] = 0  # objects with no pixel in the ring
    sums = rng.random((200, 8)) * counts
    sums[5:10] = 0  # dark objects: a zero mean
    with warnings.catch_warnings(action="ignore", category=RuntimeWarning):
        means = np.ma.MaskedArray(sums / counts, counts == 0)  # cp-measure's arithmetic
        expected = np.asarray(np.std(means, 1) / np.mean(means, 1))
    expected[np.sum(counts > 0, 1) == 0] = 0
    np.testing.assert_array_equal(_wedge_cv(sums, counts), expected)
