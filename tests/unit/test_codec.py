"""The site codec and the cell rule shared by training crops and embedding tiles."""

from pathlib import Path

import numpy as np
import pytest
import torch

from paintssl.preprocess.codec import (
    cell_mask,
    has_cells,
    read_scaled_site,
    to_uint16,
    write_site_tiff,
)


def test_cell_rule_uses_otsu_factor_and_min_fraction() -> None:
    dna = np.zeros((10, 10))
    dna[0, 0] = 0.8  # 1 % of pixels above 0.7 x Otsu 1.0
    assert has_cells(cell_mask(dna, otsu=1.0))
    assert not has_cells(cell_mask(dna, otsu=1.2))


@pytest.mark.parametrize("otsu", [0.2, 0.5, 0.9])
def test_cell_rule_is_the_same_on_numpy_and_torch(otsu: float) -> None:
    dna = np.random.default_rng(0).random((64, 64), dtype=np.float32) ** 8
    for y in range(0, 64, 16):
        crop = dna[y : y + 16]
        expected = has_cells(cell_mask(crop, otsu))
        assert has_cells(cell_mask(torch.from_numpy(crop), otsu)) == expected


def test_scaled_site_round_trips_uint16(tmp_path: Path) -> None:
    scaled = np.random.default_rng(1).random((5, 8, 8)).astype(np.float32)
    write_site_tiff(tmp_path / "s.tiff", to_uint16(scaled), ["DNA", "ER", "RNA", "AGP", "Mito"])
    restored = read_scaled_site(tmp_path / "s.tiff")
    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, scaled, atol=0.5 / 65535)
    assert not (tmp_path / "s.tiff.tmp").exists()
