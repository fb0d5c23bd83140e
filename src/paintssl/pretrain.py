"""Pretraining entry point: build a backbone, train it (or not) and export ``weights.pt``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from paintssl import CHANNELS
from paintssl.backbones import create_backbone, export_weights

log = logging.getLogger(__name__)


def channel_stats(
    manifests: Sequence[str | Path], channels: Sequence[str] = CHANNELS
) -> tuple[list[float], list[float]]:
    """Pooled per-channel mean and std of the scaled [0, 1] training images.

    Uses the per-site ``mean_<Ch>``/``std_<Ch>`` manifest columns (equal-sized sites are
    weighted by pixel count), so no image is read again.
    """
    sites = pd.concat([pd.read_parquet(m) for m in manifests], ignore_index=True)
    pixels = (sites["height"] * sites["width"]).to_numpy(dtype=float)
    means, stds = [], []
    for ch in channels:
        mean, std = sites[f"mean_{ch}"].to_numpy(), sites[f"std_{ch}"].to_numpy()
        pooled_mean = np.average(mean, weights=pixels)
        pooled_var = np.average(std**2 + (mean - pooled_mean) ** 2, weights=pixels)
        means.append(float(pooled_mean))
        stds.append(float(max(np.sqrt(pooled_var), 1e-6)))
    return means, stds


def pretrain(
    manifests: Sequence[str | Path],
    weights: str | Path,
    model: dict,
    channels: Sequence[str] = CHANNELS,
    seed: int = 0,
) -> None:
    """Export the backbone of one configured model run to ``weights``.

    ``model`` is one entry of ``config["models"]`` (method, backbone, img_size, ...).
    Method ``random`` exports the seeded random initialisation without training.
    """
    mean, std = channel_stats(manifests, channels)
    log.info("channel mean %s std %s from %d manifests", mean, std, len(manifests))
    torch.manual_seed(seed)
    kwargs = model.get("backbone_kwargs", {})
    backbone = create_backbone(
        model["backbone"], img_size=model["img_size"], in_chans=len(channels), **kwargs
    )
    if model["method"] != "random":
        raise NotImplementedError(f"method {model['method']!r} is trained by paintssl.train")
    export_weights(
        weights, backbone, model["backbone"], model["img_size"], channels, mean, std, kwargs
    )
