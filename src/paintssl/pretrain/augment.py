"""Per-sample augmentations of 5-channel crops in scaled [0, 1] units, and multi-crop views.

Every random draw takes an explicit ``torch.Generator`` so that a view is a pure function of
the sample seed (the trainer derives it from ``(seed, step, slot)``; resume reproduces it).
Normalisation with the training set's mean/std happens after these, in ``paintssl.pretrain.data``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paintssl.preprocess.codec import has_cells


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a view gets; defaults are the paper's choice (Flip + Color).

    Drop channel, Gaussian noise and Gaussian blur exist for ablations but are off.
    """

    flip: bool = True
    color: bool = True
    color_shift: float = 0.3
    gamma_min: float = 0.5
    gamma_max: float = 1.5
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
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    channels = image.shape[0]
    out = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


def augment(image: torch.Tensor, config: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply the augmentations ``config`` switches on to a (C, H, W) image in [0, 1]."""
    if config.flip:
        image = random_flip(image, gen)
    if config.color:
        image = color_jitter(image, gen, config.color_shift, config.gamma_min, config.gamma_max)
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
