"""Cell-image transforms that model the microscope: stain intensity, optics, detector, specimen.

Each takes a (C, H, W) image in scaled [0, 1] units and draws only from the ``torch.Generator``
it is given, so a view stays a pure function of the sample seed. ``paintssl.pretrain.augment``
switches them on through ``AugmentConfig`` and fixes their order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, radius: int, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-d Gaussian weights at the integer offsets ``-radius .. radius``."""
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    return weights / weights.sum()


def kernel_size(sigma: float) -> int:
    """Odd kernel side that holds a Gaussian of ``sigma`` out to three sigmas."""
    return 2 * math.ceil(3 * sigma) + 1


def intensity_jitter(
    image: torch.Tensor, gen: torch.Generator, gain: float, offset: float
) -> torch.Tensor:
    """Independent per-channel gain and offset, as varying stain and exposure, clipped to [0, 1].

    Parameters
    ----------
    image
        (C, H, W) image in [0, 1].
    gen
        Source of the draws.
    gain
        Half-width ``s`` of the gain's U(1 - s, 1 + s), mean 1; ``0 <= s < 1``.
    offset
        Half-width ``o`` of the additive U(-o, o).

    Returns
    -------
    torch.Tensor
        ``clip(image * gain_c + offset_c, 0, 1)``, same shape and dtype.
    """
    shape = (image.shape[0], 1, 1)
    gains = 1 + gain * (2 * torch.rand(shape, generator=gen, dtype=image.dtype) - 1)
    offsets = offset * (2 * torch.rand(shape, generator=gen, dtype=image.dtype) - 1)
    return (image * gains + offsets).clamp(0.0, 1.0)


def shot_noise(image: torch.Tensor, gen: torch.Generator, photons: float) -> torch.Tensor:
    """Poisson photon noise: ``Poisson(image * photons) / photons``, clipped to [0, 1].

    ``photons`` is the photon count of a full-scale (1.0) pixel, so a pixel of mean ``m``
    gets variance ``m / photons``: fewer photons, noisier image.
    """
    counts = torch.poisson(image.clamp(min=0.0) * photons, generator=gen)
    return (counts / photons).clamp(0.0, 1.0)


def elastic_field(
    height: int,
    width: int,
    alpha: float,
    sigma: float,
    gen: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Smooth random displacement field in pixels, (2, H, W): rows ``dy`` then ``dx``.

    White noise on a margin of ``3 * sigma`` around the image is smoothed by a Gaussian of
    ``sigma`` px without padding (a stationary field, no edge effects) and divided by the
    filter's gain, so each component is exactly N(0, alpha^2) at every pixel.

    Parameters
    ----------
    height, width
        Field size in pixels.
    alpha
        Standard deviation of each displacement component, in pixels.
    sigma
        Smoothness: correlation length of the field in pixels (neighbours at distance ``d``
        correlate about as exp(-d^2 / (4 sigma^2))).
    gen
        Source of the white noise.
    dtype
        Dtype of the field.

    Returns
    -------
    torch.Tensor
        (2, height, width) displacements in pixels.
    """
    radius = kernel_size(sigma) // 2
    weights = gaussian_kernel(sigma, radius, dtype)
    noise = torch.randn((2, 1, height + 2 * radius, width + 2 * radius), generator=gen, dtype=dtype)
    field = F.conv2d(F.conv2d(noise, weights.view(1, 1, 1, -1)), weights.view(1, 1, -1, 1))
    # A separable filter w x w scales white noise's variance by (sum w^2)^2.
    return (alpha / weights.square().sum()) * field[:, 0]


def elastic_deform(image: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Resample every channel of ``image`` at ``(y + dy, x + dx)`` (bilinear, reflected edges).

    One field moves all channels alike, so the channels of a cell stay registered.
    ``field`` is (2, H, W) in pixels as ``elastic_field`` returns it; H and W must be >= 2.
    Computed in float64 so that a zero field returns the image to rounding (< 1e-6).
    """
    _, height, width = image.shape
    rows = torch.arange(height, dtype=torch.float64)[:, None] + field[0].double()
    cols = torch.arange(width, dtype=torch.float64)[None, :] + field[1].double()
    # align_corners=True: -1 and 1 are the centres of the first and last pixels.
    grid = torch.stack([cols * (2 / (width - 1)) - 1, rows * (2 / (height - 1)) - 1], dim=-1)
    out = F.grid_sample(
        image[None].double(),
        grid[None],
        mode="bilinear",
        padding_mode="reflection",
        align_corners=True,
    )
    return out[0].to(image.dtype).clamp(0.0, 1.0)
