"""Statistics of the per-sample augmentations and the cell-aware crops."""

import math

import pytest
import torch
import torch.nn.functional as F

from paintssl.pretrain.augment import (
    AugmentConfig,
    CropGroup,
    MultiCrop,
    augment,
    cell_crop,
    chance,
    color_jitter,
    drop_channel,
    gaussian_blur,
    gaussian_noise,
    random_flip,
    uniform,
)
from paintssl.pretrain.augment_cells import (
    elastic_deform,
    elastic_field,
    intensity_jitter,
    shot_noise,
)

DRAWS = 2000
# Statistical checks accept an estimate within Z standard errors of its expectation: a false
# failure has two-sided normal probability 6e-5 per check (the seeds are fixed, so each test is
# deterministic; Z only says how far off a correct implementation could plausibly land).
Z = 4.0
PLAIN = {"flip": False, "color": False}
NEW_OPS = {
    "intensity_p": 1.0,
    "elastic_p": 1.0,
    "defocus_p": 1.0,
    "shot_noise_p": 1.0,
    "read_noise_p": 1.0,
}


def reference_kernel(sigma: float) -> torch.Tensor:
    """Normalised sampled Gaussian out to ceil(3 sigma), as a defocus of ``sigma`` uses."""
    x = torch.arange(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1, dtype=torch.float64)
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    return weights / weights.sum()


def test_defaults_are_flip_and_color_only() -> None:
    cfg = AugmentConfig()
    assert cfg.flip
    assert cfg.color
    assert (cfg.color_shift, cfg.gamma_min, cfg.gamma_max, cfg.blur_kernel) == (0.3, 0.5, 1.5, 23)
    assert cfg.drop_channel_p == cfg.noise_p == cfg.blur_p == 0.0
    assert all(getattr(cfg, name) == 0.0 for name in NEW_OPS)


def old_gaussian_blur(image: torch.Tensor, sigma: float, kernel: int) -> torch.Tensor:
    """``gaussian_blur`` as it was before the kernel moved to ``gaussian_kernel``."""
    radius = kernel // 2
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    channels = image.shape[0]
    out = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"color": False}, {"drop_channel_p": 0.5, "blur_p": 0.5, "noise_p": 0.5}],
)
def test_configs_without_the_new_ops_give_the_old_views_bitwise(overrides: dict) -> None:
    cfg = AugmentConfig(**overrides)
    image = torch.rand(5, 32, 32, generator=torch.Generator().manual_seed(9))
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        expected = random_flip(image, gen) if cfg.flip else image  # the old augment, by hand
        if cfg.color:
            expected = color_jitter(expected, gen, cfg.color_shift, cfg.gamma_min, cfg.gamma_max)
        if cfg.drop_channel_p and chance(cfg.drop_channel_p, gen):
            expected = drop_channel(expected, gen)
        if cfg.blur_p and chance(cfg.blur_p, gen):
            sigma = float(uniform(cfg.blur_sigma_min, cfg.blur_sigma_max, (), gen))
            expected = old_gaussian_blur(expected, sigma, cfg.blur_kernel)
        if cfg.noise_p and chance(cfg.noise_p, gen):
            expected = gaussian_noise(expected, gen, cfg.noise_std)
        assert torch.equal(augment(image, cfg, torch.Generator().manual_seed(seed)), expected)


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
    # binomial share: standard error sqrt(q (1 - q) / n)
    tolerance = Z * math.sqrt(0.2 * 0.8 / DRAWS)
    assert torch.allclose(dropped.float().mean(dim=0), torch.full((5,), 0.2), atol=tolerance)


def test_drop_channel_p_is_the_dropping_frequency_spread_evenly_over_channels() -> None:
    p, draws = 0.3, 10_000
    cfg = AugmentConfig(**PLAIN, drop_channel_p=p)
    gen = torch.Generator().manual_seed(0)
    image = torch.ones(5, 2, 2)
    dropped = torch.stack([(augment(image, cfg, gen) == 0).all(dim=(1, 2)) for _ in range(draws)])
    assert (dropped.sum(dim=1) <= 1).all()
    # binomial shares: a view loses a channel w.p. p, a given channel w.p. p / 5
    share = dropped.any(dim=1).float().mean()
    assert abs(share - p) < Z * math.sqrt(p * (1 - p) / draws)
    q = p / 5
    per_channel = dropped.float().mean(dim=0)
    assert ((per_channel - q).abs() < Z * math.sqrt(q * (1 - q) / draws)).all()


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"photons": 0.0}, "photons must be positive"),
        ({"photons": math.inf}, "photons must be positive"),
        ({"shot_noise_p": 1.5}, "shot_noise_p is a probability"),
        ({"drop_channel_p": -0.1}, "drop_channel_p is a probability"),
        ({"elastic_p": math.nan}, "elastic_p is a probability"),
        ({"intensity_gain": 1.0}, "intensity_gain < 1"),
        ({"intensity_offset": -0.1}, "intensity_offset must be >= 0"),
        ({"elastic_alpha": -1.0}, "elastic_alpha must be >= 0"),
        ({"elastic_sigma": 0.0}, "elastic_sigma must be positive"),
        ({"read_noise_std": -0.01}, "read_noise_std must be >= 0"),
        ({"defocus_sigma_min": 2.0, "defocus_sigma_max": 1.0}, "defocus_sigma_min <="),
        ({"defocus_sigma_min": 0.0}, "0 < defocus_sigma_min"),
    ],
)
def test_invalid_values_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**overrides)


@pytest.mark.parametrize("switch", sorted(NEW_OPS))
def test_each_new_op_applies_with_its_probability(switch: str) -> None:
    p, draws = 0.3, 400
    cfg = AugmentConfig(**PLAIN, **{switch: p})
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(5, 16, 16, generator=gen) * 0.5 + 0.25
    changed = [not torch.equal(augment(image, cfg, gen), image) for _ in range(draws)]
    assert abs(sum(changed) / draws - p) < Z * math.sqrt(p * (1 - p) / draws)


def test_new_ops_are_a_pure_function_of_the_seed_and_keep_shape_dtype_range() -> None:
    cfg = AugmentConfig(**NEW_OPS, drop_channel_p=1.0)
    for dtype in (torch.float32, torch.float64):
        image = torch.rand(5, 24, 20, generator=torch.Generator().manual_seed(1), dtype=dtype)
        views = [augment(image, cfg, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
        assert torch.equal(views[0], views[1])
        assert not torch.equal(views[0], views[2])
        assert views[0].shape == image.shape
        assert views[0].dtype == dtype
        assert 0.0 <= views[0].min() <= views[0].max() <= 1.0


def test_intensity_gains_are_independent_per_channel_with_mean_one() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.full((5, 1, 1), 0.5)
    s = 0.2
    gains = torch.stack(
        [intensity_jitter(image, gen, s, 0.0).flatten() / 0.5 for _ in range(DRAWS)]
    )
    assert gains.min() >= 1 - s - 1e-6
    assert gains.max() <= 1 + s + 1e-6
    assert (gains.amax(dim=1) > gains.amin(dim=1)).all()  # every view: channels differ
    sd = s / math.sqrt(3)  # std of U(1 - s, 1 + s)
    assert abs(gains.mean() - 1.0) < Z * sd / math.sqrt(gains.numel())
    assert ((gains.mean(dim=0) - 1.0).abs() < Z * sd / math.sqrt(DRAWS)).all()
    # sample std of a uniform (kurtosis 9/5): standard error sd * sqrt((9/5 - 1) / (4 n))
    std_tolerance = Z * sd * math.sqrt(0.2 / DRAWS)
    assert torch.allclose(gains.std(dim=0), torch.full((5,), sd), atol=std_tolerance)
    # independent channels: each sample correlation has standard error 1 / sqrt(n)
    correlation = torch.corrcoef(gains.T) - torch.eye(5)
    assert correlation.abs().max() < Z / math.sqrt(DRAWS)


def test_intensity_offsets_are_uniform_independent_and_output_clipped() -> None:
    gen = torch.Generator().manual_seed(1)
    image = torch.full((5, 1, 1), 0.5)
    o = 0.05
    offsets = torch.stack(
        [intensity_jitter(image, gen, 0.0, o).flatten() - 0.5 for _ in range(DRAWS)]
    )
    assert offsets.abs().max() <= o + 1e-6
    assert abs(offsets.mean()) < Z * (o / math.sqrt(3)) / math.sqrt(offsets.numel())
    correlation = torch.corrcoef(offsets.T) - torch.eye(5)
    assert correlation.abs().max() < Z / math.sqrt(DRAWS)
    extremes = torch.tensor([0.0, 1.0], dtype=torch.float64).view(1, 1, 2).expand(5, 4, 2)
    out = torch.stack([intensity_jitter(extremes, gen, 0.5, 0.2) for _ in range(200)])
    assert out.dtype == torch.float64
    assert out.shape[1:] == extremes.shape
    assert out.min() == 0.0
    assert out.max() == 1.0


def test_shot_noise_variance_is_mean_over_photons() -> None:
    photons, side = 1000.0, 256
    levels = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8])
    image = levels.view(5, 1, 1).expand(5, side, side).contiguous()
    out = shot_noise(image, torch.Generator().manual_seed(0), photons)
    assert out.shape == image.shape
    assert out.dtype == image.dtype
    n = side * side
    rate = levels * photons  # Poisson counts; at most 0.8 * 1000, 7 sigmas below the clip
    expected_variance = levels / photons
    # sample variance of Poisson(rate) counts (excess kurtosis 1 / rate): relative standard
    # error sqrt(2 / (n - 1) + 1 / (rate n)), about 0.55 % here
    relative_se = torch.sqrt(2 / (n - 1) + 1 / (rate * n))
    relative_error = out.var(dim=(1, 2)) / expected_variance - 1
    assert (relative_error.abs() < Z * relative_se).all()
    assert ((out.mean(dim=(1, 2)) - levels).abs() < Z * torch.sqrt(expected_variance / n)).all()
    counts = out * photons
    assert torch.allclose(counts, counts.round(), atol=1e-3)  # whole photons
    bright = shot_noise(torch.ones(5, 16, 16), torch.Generator().manual_seed(0), 10.0)
    assert 0.0 <= bright.min() <= bright.max() <= 1.0


def test_read_noise_has_the_configured_std() -> None:
    std, side = 0.02, 128
    cfg = AugmentConfig(**PLAIN, read_noise_p=1.0, read_noise_std=std)
    image = torch.full((5, side, side), 0.5)  # 25 sigmas from either clip
    residual = augment(image, cfg, torch.Generator().manual_seed(0)) - image
    n = residual.numel()
    assert abs(residual.mean()) < Z * std / math.sqrt(n)
    assert abs(residual.std() - std) < Z * std / math.sqrt(2 * (n - 1))  # normal sample std


@pytest.mark.parametrize("sigma", [0.5, 0.8])
def test_defocus_damps_the_nyquist_pattern_by_the_kernel_response(sigma: float) -> None:
    cfg = AugmentConfig(**PLAIN, defocus_p=1.0, defocus_sigma_min=sigma, defocus_sigma_max=sigma)
    xs = torch.arange(33)
    sign = (-1.0) ** (xs[:, None] + xs[None, :])  # checkerboard: Nyquist along both axes
    image = (0.5 + 0.4 * sign).expand(5, -1, -1)
    out = augment(image, cfg, torch.Generator().manual_seed(0))
    # reflect padding continues the checkerboard, so each 1-d pass multiplies it exactly by
    # the kernel's response at Nyquist, sum_k (-1)^k w_k
    weights = reference_kernel(sigma)
    offsets = torch.arange(len(weights)) - len(weights) // 2
    response = float((weights * (-1.0) ** offsets).sum())
    assert 0 < response < 1
    expected = 0.5 + 0.4 * response**2 * sign
    assert torch.allclose(out, expected.expand(5, -1, -1).float(), atol=1e-6)
    constant = torch.full((5, 20, 20), 0.3)
    assert torch.allclose(augment(constant, cfg, torch.Generator()), constant, atol=1e-6)


def test_defocus_reduces_high_frequency_energy_and_keeps_shape_and_range() -> None:
    cfg = AugmentConfig(**PLAIN, defocus_p=1.0)  # default sigma range
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(5, 32, 32, generator=gen)
    frequencies = torch.fft.fftfreq(32).abs()
    high = (frequencies[:, None] > 0.25) | (frequencies[None, :] > 0.25)

    def high_energy(x: torch.Tensor) -> torch.Tensor:
        return (torch.fft.fft2(x).abs() ** 2)[:, high].sum(dim=1)

    for _ in range(20):
        out = augment(image, cfg, gen)
        assert out.shape == image.shape
        assert out.dtype == image.dtype
        assert 0.0 <= out.min() <= out.max() <= 1.0
        assert (high_energy(out) < high_energy(image)).all()


def test_elastic_field_has_the_configured_std_and_is_smooth() -> None:
    alpha, sigma, fields = 2.0, 4.0, 200
    gen = torch.Generator().manual_seed(0)
    sq, sq_step = [], []
    for _ in range(fields):
        field = elastic_field(48, 48, alpha, sigma, gen).double()
        assert field.shape == (2, 48, 48)
        sq.append(field.square().mean())
        steps = torch.cat([field.diff(dim=1).flatten(), field.diff(dim=2).flatten()])
        sq_step.append(steps.square().mean())
    sq, sq_step = torch.stack(sq), torch.stack(sq_step)
    # the fields are independent: a mean over them has standard error std / sqrt(fields)
    assert abs(sq.mean() - alpha**2) < Z * sq.std() / math.sqrt(fields)
    # stationary field smoothed by w x w: neighbours correlate as sum w_k w_k+1 / sum w_k^2,
    # so E[(d(x + 1) - d(x))^2] = 2 alpha^2 (1 - rho); about 1.5 % of white noise's 2 alpha^2
    weights = reference_kernel(sigma)
    rho = float((weights[1:] * weights[:-1]).sum() / weights.square().sum())
    expected_step = 2 * alpha**2 * (1 - rho)
    assert abs(sq_step.mean() - expected_step) < Z * sq_step.std() / math.sqrt(fields)
    assert expected_step < 0.02 * 2 * alpha**2


def test_elastic_deform_moves_every_channel_by_the_field() -> None:
    height, width = 40, 48
    field = elastic_field(height, width, 2.0, 4.0, torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ramps = torch.stack([ys / (height - 1), xs / (width - 1)]).float()
    out = elastic_deform(ramps, field)
    assert out.shape == ramps.shape
    # bilinear sampling of a ramp is exact where the source lies inside the image; float32
    # rounding of the ramp values costs eps * (side - 1) ~ 6e-6 px
    inside = (
        (ys + field[0] >= 0)
        & (ys + field[0] <= height - 1)
        & (xs + field[1] >= 0)
        & (xs + field[1] <= width - 1)
    )
    assert inside.float().mean() > 0.8
    moved = torch.stack([out[0] * (height - 1) - ys, out[1] * (width - 1) - xs])
    assert torch.allclose(moved[:, inside], field[:, inside], atol=1e-4)
    same = torch.rand(1, height, width).expand(5, -1, -1)
    deformed = elastic_deform(same, field)
    assert all(torch.equal(deformed[0], channel) for channel in deformed[1:])


def test_elastic_alpha_zero_is_the_identity() -> None:
    cfg = AugmentConfig(**PLAIN, elastic_p=1.0, elastic_alpha=0.0)
    image = torch.rand(5, 33, 27, generator=torch.Generator().manual_seed(0))
    out = augment(image, cfg, torch.Generator().manual_seed(1))
    assert out.shape == image.shape
    assert (out - image).abs().max() <= 1e-6


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
