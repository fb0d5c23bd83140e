"""Statistics of the per-sample augmentations and the cell-aware crops."""

import math

import pytest
import torch

from paintssl.pretrain.augment import (
    AugmentConfig,
    CropGroup,
    MultiCrop,
    augment,
    cell_crop,
    color_jitter,
    drop_channel,
    gaussian_blur,
    gaussian_noise,
    random_flip,
)

DRAWS = 2000


def test_defaults_are_flip_and_color_only() -> None:
    cfg = AugmentConfig()
    assert cfg.flip
    assert cfg.color
    assert (cfg.color_shift, cfg.gamma_min, cfg.gamma_max, cfg.blur_kernel) == (0.3, 0.5, 1.5, 23)
    assert cfg.drop_channel_p == cfg.noise_p == cfg.blur_p == 0.0


def test_flip_probabilities_are_half_and_independent() -> None:
    image = torch.arange(4.0).view(1, 2, 2)
    gen = torch.Generator().manual_seed(0)
    corners = torch.stack([random_flip(image, gen)[0, 0, 0] for _ in range(DRAWS)])
    shares = torch.stack([(corners == v).float().mean() for v in range(4)])
    assert torch.allclose(shares, torch.full((4,), 0.25), atol=0.03)


def test_color_shift_is_uniform_per_channel() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.full((5, 2, 2), 0.5)
    shifts = torch.stack(
        [color_jitter(image, gen, 0.3, 1.0, 1.0)[:, 0, 0] - 0.5 for _ in range(DRAWS)]
    )
    assert shifts.min() >= -0.3 - 1e-6
    assert shifts.max() <= 0.3 + 1e-6
    assert shifts.mean().abs() < 0.01
    assert torch.allclose(shifts.std(dim=0), torch.full((5,), 0.3 / math.sqrt(3)), rtol=0.06)
    correlation = torch.corrcoef(shifts.T) - torch.eye(5)
    assert correlation.abs().max() < 0.1  # channels are shifted independently


def test_color_gamma_is_uniform_and_output_clipped() -> None:
    gen = torch.Generator().manual_seed(1)
    image = torch.full((5, 1, 1), 0.5)
    gammas = torch.stack(
        [
            torch.log(color_jitter(image, gen, 0.0, 0.5, 1.5).flatten()) / math.log(0.5)
            for _ in range(DRAWS)
        ]
    )
    assert gammas.min() >= 0.5 - 1e-5
    assert gammas.max() <= 1.5 + 1e-5
    assert abs(gammas.mean() - 1.0) < 0.02
    extremes = torch.tensor([0.0, 1.0]).view(1, 1, 2).expand(5, 1, 2)
    out = torch.stack([color_jitter(extremes, gen, 0.3, 0.5, 1.5) for _ in range(200)])
    assert out.min() >= 0.0
    assert out.max() <= 1.0


def test_drop_channel_zeroes_exactly_one_uniformly_chosen_channel() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.ones(5, 3, 3)
    dropped = torch.stack([(drop_channel(image, gen) == 0).all(dim=(1, 2)) for _ in range(DRAWS)])
    assert (dropped.sum(dim=1) == 1).all()
    assert torch.allclose(dropped.float().mean(dim=0), torch.full((5,), 0.2), atol=0.03)


def test_gaussian_noise_has_requested_std_and_stays_in_range() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.full((5, 64, 64), 0.5)
    residual = gaussian_noise(image, gen, 0.05) - image
    assert abs(residual.mean()) < 0.002
    assert abs(residual.std() - 0.05) < 0.002
    assert gaussian_noise(torch.ones(5, 8, 8), gen, 0.5).max() <= 1.0


def test_gaussian_blur_conserves_mass_and_has_sigma_spread() -> None:
    impulse = torch.zeros(2, 41, 41)
    impulse[:, 20, 20] = 1.0
    sigma = 2.0
    out = gaussian_blur(impulse, sigma, kernel=23)
    assert torch.allclose(out.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)
    ys = torch.arange(41.0) - 20
    variance = (out[0].sum(dim=1) * ys**2).sum()
    assert abs(variance - sigma**2) < 0.05
    constant = torch.full((5, 30, 30), 0.3)
    assert torch.allclose(gaussian_blur(constant, 1.5, 23), constant, atol=1e-6)


def test_optional_augmentations_apply_only_when_switched_on() -> None:
    image = torch.rand(5, 16, 16)
    off = AugmentConfig(flip=False, color=False)
    assert torch.equal(augment(image, off, torch.Generator().manual_seed(0)), image)
    on = AugmentConfig(flip=False, color=False, drop_channel_p=1.0)
    out = augment(image, on, torch.Generator().manual_seed(0))
    assert (out == 0).all(dim=(1, 2)).sum() == 1


def test_even_blur_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        AugmentConfig(blur_kernel=22)


def test_cell_crop_prefers_crops_with_cells() -> None:
    cells = torch.zeros(64, 64, dtype=torch.bool)
    cells[:24, :24] = True  # cells only in one corner
    image = cells.float()[None].expand(5, -1, -1)
    gen = torch.Generator().manual_seed(0)
    picked = [cell_crop(image, cells, 16, gen)[0].mean() >= 0.01 for _ in range(300)]
    blind = [cell_crop(image, cells, 16, gen, tries=1)[0].mean() >= 0.01 for _ in range(300)]
    assert sum(picked) / 300 > 0.95
    assert sum(blind) / 300 < 0.35


def test_cell_crop_refuses_small_sites() -> None:
    with pytest.raises(ValueError, match="smaller than the 32 px crop"):
        cell_crop(
            torch.rand(5, 16, 16), torch.ones(16, 16, dtype=torch.bool), 32, torch.Generator()
        )


def test_multicrop_returns_groups_in_order_and_is_reproducible() -> None:
    transform = MultiCrop([CropGroup(24, 2, AugmentConfig()), CropGroup(8, 3, AugmentConfig())])
    image, cells = torch.rand(5, 40, 40), torch.ones(40, 40, dtype=torch.bool)
    views = transform(image, cells, torch.Generator().manual_seed(3))
    again = transform(image, cells, torch.Generator().manual_seed(3))
    assert [v.shape[-1] for v in views] == [24, 24, 8, 8, 8]
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
