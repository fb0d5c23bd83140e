"""Training dataset over preprocessed sites, and the (seed, step) batch order."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from paintssl.pretrain.augment import AugmentConfig, CropGroup, MultiCrop
from paintssl.pretrain.data import (
    SiteViews,
    StepBatches,
    sample_seed,
    step_loader,
    training_views,
)
from paintssl.pretrain.objectives import OBJECTIVES
from paintssl.tables import CHANNELS, PLATE, WELL

from .test_objectives import tiny_objective

PLAIN = AugmentConfig(flip=False, color=False)


def write_manifest(root: Path, n_sites: int = 3, size: int = 48) -> Path:
    """A manifest with ``n_sites`` random uint16 5-channel sites, two per well (the contract)."""
    rng = np.random.default_rng(0)
    (root / "sites").mkdir(parents=True)
    rows = []
    for i in range(n_sites):
        path = f"sites/s{i}.tiff"
        tifffile.imwrite(root / path, rng.integers(0, 65535, (5, size, size), dtype=np.uint16))
        row = {PLATE: "P1", WELL: f"A{i // 2 + 1:02d}", "path": path, "dna_otsu": 0.5}
        rows.append(row | {"channels": ",".join(CHANNELS)})
    manifest = root / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    return manifest


def test_views_are_normalised_after_augmentation(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    mean, std = [0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]
    data = SiteViews([manifest], MultiCrop([CropGroup(48, 1, PLAIN)]), mean, std)
    (view,) = data[(1, 7)]
    raw = tifffile.imread(tmp_path / "sites/s1.tiff").astype(np.float32) / 65535
    expected = (raw - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(view.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_views_depend_only_on_the_sample_seed(tmp_path: Path) -> None:
    data = SiteViews(
        [write_manifest(tmp_path)],
        MultiCrop([CropGroup(16, 2, AugmentConfig())]),
        [0.5] * 5,
        [0.2] * 5,
    )
    first, again, other = data[(0, 11)], data[(0, 11)], data[(0, 12)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


def test_other_channel_order_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    with pytest.raises(ValueError, match="expected 'ER,DNA,RNA,AGP,Mito'"):
        SiteViews(
            [manifest], MultiCrop([]), [0.0] * 5, [1.0] * 5, ["ER", "DNA", "RNA", "AGP", "Mito"]
        )


def test_step_batches_cover_each_site_once_per_pass() -> None:
    sampler = StepBatches(n_items=6, batch_size=3, seed=0, start=0, total=4)
    keys = [key for batch in sampler for key in batch]
    assert len(sampler) == 4
    assert sorted(i for i, _ in keys[:6]) == list(range(6))
    assert sorted(i for i, _ in keys[6:]) == list(range(6))
    assert len({s for _, s in keys}) == len(keys)  # every sample gets its own seed


def test_step_batches_resume_reproduces_the_tail() -> None:
    full = list(StepBatches(7, 4, seed=3, start=0, total=6))
    resumed = list(StepBatches(7, 4, seed=3, start=2, total=6))
    assert resumed == full[2:]
    assert full[0][0][1] == sample_seed(3, 0, 0)


def test_ranks_split_the_global_batch() -> None:
    whole = StepBatches(10, 4, seed=1, start=0, total=3).batch(2)
    halves = [StepBatches(10, 4, 1, 0, 3, rank=r, world_size=2).batch(2) for r in range(2)]
    assert halves[0] + halves[1] == whole
    with pytest.raises(ValueError, match="not divisible"):
        StepBatches(10, 5, 1, 0, 3, rank=0, world_size=2)


def test_loader_collates_views_per_position(tmp_path: Path) -> None:
    transform = MultiCrop([CropGroup(32, 2, PLAIN), CropGroup(16, 1, PLAIN)])
    data = SiteViews([write_manifest(tmp_path)], transform, [0.5] * 5, [0.2] * 5)
    batches = list(step_loader(data, StepBatches(len(data), 2, seed=0, start=0, total=2)))
    assert len(batches) == 2
    assert [tuple(v.shape) for v in batches[0]] == [(2, 5, 32, 32), (2, 5, 32, 32), (2, 5, 16, 16)]


def test_site_cache_fills_to_its_budget_and_changes_no_view(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    transform, stats = MultiCrop([CropGroup(16, 2, AugmentConfig())]), ([0.5] * 5, [0.2] * 5)
    site_mb = (5 * 48 * 48 * 4 + 48 * 48) / 2**20  # float32 planes and a bool mask
    uncached = SiteViews([manifest], transform, *stats)
    one_site = SiteViews([manifest], transform, *stats, cache_mb=1.5 * site_mb)
    every_site = SiteViews([manifest], transform, *stats, cache_mb=100)
    for key in [(0, 1), (1, 2), (2, 3), (0, 4), (2, 5)]:
        expected = uncached[key]
        for data in (one_site, every_site):
            assert all(torch.equal(a, b) for a, b in zip(expected, data[key], strict=True))
    assert list(one_site._cache) == [0]
    assert sorted(every_site._cache) == [0, 1, 2]
    assert not uncached._cache


PROBABILITIES = [f for f in AugmentConfig.__dataclass_fields__ if f.endswith("_p")]
ONE_AUGMENTATION_EACH = [{"flip": True, "color": False}, {"flip": False, "color": True}] + [
    {"flip": False, "color": False, p: 1.0} for p in PROBABILITIES
]


@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_view_transforms_leave_the_cached_sites_unchanged(method: str, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    fresh = SiteViews([manifest], MultiCrop([]), [0.0] * 5, [1.0] * 5)
    for augment in ONE_AUGMENTATION_EACH:  # each alone: no earlier copy hides an in-place edit
        objective = tiny_objective(method, augment=augment)
        data = training_views([manifest], objective.view_transform(), [0.5] * 5, [0.2] * 5,
                              sites_per_well=objective.sites_per_well, cache_mb=100)  # fmt: skip
        for seed in range(4):
            data[(seed % 2, seed)]
        assert data._cache
        for index, (image, cells) in data._cache.items():
            expected_image, expected_cells = fresh.load(index)
            assert torch.equal(image, expected_image), (augment, index)
            assert torch.equal(cells, expected_cells), (augment, index)
