"""Per-sample augmentations of 5-channel crops in scaled [0, 1] units, and multi-crop views.

Every random draw takes an explicit ``torch.Generator`` so that a view is a pure function of
the sample seed (the trainer derives it from ``(seed, step, slot)``; resume reproduces it).
Normalisation with the training set's mean/std happens after these, in ``paintssl.pretrain.data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paintssl.preprocess.codec import has_cells
from paintssl.pretrain.augment_cells import (
    elastic_deform,
    elastic_field,
    gaussian_kernel,
    intensity_jitter,
    kernel_size,
    shot_noise,
)


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a view gets; defaults are the paper's choice (Flip + Color).

    Every other augmentation is off (probability 0) by default and then draws nothing from the
    generator, so a config that leaves it off gives bitwise the same views as before it existed.
    The order in which ``augment`` applies them is documented there.

    Attributes
    ----------
    flip, color, color_shift, gamma_min, gamma_max
        Flips, and the paper's Color: per-channel shift U(-color_shift, color_shift), then
        gamma U(gamma_min, gamma_max).
    intensity_p, intensity_gain, intensity_offset
        Channel-aware intensity jitter (stain and exposure): independent per-channel gain
        U(1 - intensity_gain, 1 + intensity_gain) and offset U(-intensity_offset,
        intensity_offset), with probability ``intensity_p``.
    elastic_p, elastic_alpha, elastic_sigma
        Elastic deformation, one field for all channels: each displacement component is
        N(0, elastic_alpha^2) px, smoothed over ``elastic_sigma`` px.
    defocus_p, defocus_sigma_min, defocus_sigma_max
        Slight defocus: Gaussian blur of sigma U(min, max) px, kernel out to three sigmas.
    shot_noise_p, photons
        Poisson shot noise, ``photons`` photons at full scale (variance = mean / photons).
    read_noise_p, read_noise_std
        Gaussian read noise of the detector, std ``read_noise_std``.
    drop_channel_p
        Zero one uniformly chosen channel.
    blur_p, blur_kernel, blur_sigma_min, blur_sigma_max, noise_p, noise_std
        The ablations' Gaussian blur and Gaussian noise (after drop channel, as before).
    """

    flip: bool = True
    color: bool = True
    color_shift: float = 0.3
    gamma_min: float = 0.5
    gamma_max: float = 1.5
    intensity_p: float = 0.0
    intensity_gain: float = 0.2
    intensity_offset: float = 0.02
    elastic_p: float = 0.0
    elastic_alpha: float = 2.0
    elastic_sigma: float = 8.0
    defocus_p: float = 0.0
    defocus_sigma_min: float = 0.5
    defocus_sigma_max: float = 1.5
    shot_noise_p: float = 0.0
    photons: float = 1000.0
    read_noise_p: float = 0.0
    read_noise_std: float = 0.01
    drop_channel_p: float = 0.0
    noise_p: float = 0.0
    noise_std: float = 0.05
    blur_p: float = 0.0
    blur_kernel: int = 23
    blur_sigma_min: float = 0.1
    blur_sigma_max: float = 2.0

    def __post_init__(self) -> None:
        if self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd, got {self.blur_kernel}")
        if not 0 < self.gamma_min <= self.gamma_max:
            raise ValueError(f"need 0 < gamma_min <= gamma_max: {self.gamma_min}, {self.gamma_max}")
        for name in PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.intensity_gain < 1.0:
            raise ValueError(f"need 0 <= intensity_gain < 1 (gains > 0): {self.intensity_gain}")
        for name in ("intensity_offset", "elastic_alpha", "read_noise_std"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("elastic_sigma", "photons"):
            if not 0.0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be positive and finite, got {getattr(self, name)}")
        if not 0 < self.defocus_sigma_min <= self.defocus_sigma_max:
            raise ValueError(
                "need 0 < defocus_sigma_min <= defocus_sigma_max: "
                f"{self.defocus_sigma_min}, {self.defocus_sigma_max}"
            )


PROBABILITIES = (
    "intensity_p",
    "elastic_p",
    "defocus_p",
    "shot_noise_p",
    "read_noise_p",
    "drop_channel_p",
    "noise_p",
    "blur_p",
)


def uniform(low: float, high: float, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Draws from U(low, high) with ``gen``."""
    return low + (high - low) * torch.rand(shape, generator=gen)


def chance(p: float, gen: torch.Generator) -> bool:
    """Return True with probability ``p``."""
    return bool(torch.rand((), generator=gen) < p)


def random_flip(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip a (C, H, W) image horizontally and vertically, each with probability 0.5."""
    if chance(0.5, gen):
        image = image.flip(-1)
    if chance(0.5, gen):
        image = image.flip(-2)
    return image


def color_jitter(
    image: torch.Tensor, gen: torch.Generator, shift: float, gamma_min: float, gamma_max: float
) -> torch.Tensor:
    """Per-channel intensity shift U(-shift, shift), clip to [0, 1], then gamma U(min, max)."""
    channels = image.shape[0]
    offset = uniform(-shift, shift, (channels, 1, 1), gen)
    gamma = uniform(gamma_min, gamma_max, (channels, 1, 1), gen)
    return (image + offset).clamp(0.0, 1.0).pow(gamma)


def drop_channel(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Set one random channel to zero."""
    out = image.clone()
    out[int(torch.randint(image.shape[0], (), generator=gen))] = 0.0
    return out


def gaussian_noise(image: torch.Tensor, gen: torch.Generator, std: float) -> torch.Tensor:
    """Add N(0, std^2) noise and clip to [0, 1]."""
    return (image + std * torch.randn(image.shape, generator=gen)).clamp(0.0, 1.0)


def gaussian_blur(image: torch.Tensor, sigma: float, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur of each channel with reflect padding."""
    radius = kernel // 2
    weights = gaussian_kernel(sigma, radius, image.dtype)
    channels = image.shape[0]
    out = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


def augment(image: torch.Tensor, config: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply the augmentations ``config`` switches on to a (C, H, W) image in [0, 1].

    The order follows image formation: the specimen's geometry (flip, elastic deformation),
    its stain intensity (Color, intensity jitter), the optics (defocus), the detector (shot
    noise of the collected photons, then the electronics' read noise), then a missing channel
    (drop channel, exact zeros). The ablations' blur and noise come last, where they always
    were, so the old operations keep their relative order and old configs their exact views.
    """
    if config.flip:
        image = random_flip(image, gen)
    if config.elastic_p and chance(config.elastic_p, gen):
        height, width = image.shape[-2:]
        field = elastic_field(
            height, width, config.elastic_alpha, config.elastic_sigma, gen, image.dtype
        )
        image = elastic_deform(image, field)
    if config.color:
        image = color_jitter(image, gen, config.color_shift, config.gamma_min, config.gamma_max)
    if config.intensity_p and chance(config.intensity_p, gen):
        image = intensity_jitter(image, gen, config.intensity_gain, config.intensity_offset)
    if config.defocus_p and chance(config.defocus_p, gen):
        sigma = float(uniform(config.defocus_sigma_min, config.defocus_sigma_max, (), gen))
        image = gaussian_blur(image, sigma, kernel_size(sigma))
    if config.shot_noise_p and chance(config.shot_noise_p, gen):
        image = shot_noise(image, gen, config.photons)
    if config.read_noise_p and chance(config.read_noise_p, gen):
        image = gaussian_noise(image, gen, config.read_noise_std)
    if config.drop_channel_p and chance(config.drop_channel_p, gen):
        image = drop_channel(image, gen)
    if config.blur_p and chance(config.blur_p, gen):
        sigma = float(uniform(config.blur_sigma_min, config.blur_sigma_max, (), gen))
        image = gaussian_blur(image, sigma, config.blur_kernel)
    if config.noise_p and chance(config.noise_p, gen):
        image = gaussian_noise(image, gen, config.noise_std)
    return image


def cell_crop(
    image: torch.Tensor,
    cells: torch.Tensor,
    size: int,
    gen: torch.Generator,
    tries: int = 20,
) -> torch.Tensor:
    """Random ``size`` x ``size`` crop that holds cells (``preprocess.codec.has_cells``).

    Tries up to ``tries`` positions and keeps the last one when none passes (authors' code).
    """
    height, width = cells.shape
    if height < size or width < size:
        raise ValueError(f"site of {height}x{width} px is smaller than the {size} px crop")
    for _ in range(tries):
        y = int(torch.randint(height - size + 1, (), generator=gen))
        x = int(torch.randint(width - size + 1, (), generator=gen))
        if has_cells(cells[y : y + size, x : x + size]):
            break
    return image[:, y : y + size, x : x + size]


@dataclass(frozen=True)
class CropGroup:
    """``count`` cell-aware crops of ``size`` px, each augmented with ``augment``."""

    size: int
    count: int
    augment: AugmentConfig


class MultiCrop:
    """View transform: one site image and its cell mask -> the list of augmented crops."""

    def __init__(self, groups: list[CropGroup]) -> None:
        self.groups = list(groups)

    def __call__(
        self, image: torch.Tensor, cells: torch.Tensor, gen: torch.Generator
    ) -> list[torch.Tensor]:
        """Crops in group order; ``image`` is (C, H, W) in [0, 1], ``cells`` (H, W) bool."""
        return [
            augment(cell_crop(image, cells, group.size, gen), group.augment, gen)
            for group in self.groups
            for _ in range(group.count)
        ]
