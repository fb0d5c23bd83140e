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
from paintssl.curves import plot_training_curves
from paintssl.data import SiteViews
from paintssl.objectives import build_objective, objective_class
from paintssl.train import TrainConfig, is_main_process, train

log = logging.getLogger(__name__)

MODEL_KEYS = ("method", "backbone", "img_size", "backbone_kwargs", "method_params", "train")
"""Keys of one ``config["models"]`` entry; ``method``, ``backbone``, ``img_size`` are required."""


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


def check_model_entry(model: dict) -> None:
    """Refuse unknown or missing keys in one model entry, naming them."""
    unknown = sorted(set(model) - set(MODEL_KEYS))
    missing = [k for k in MODEL_KEYS[:3] if k not in model]
    if unknown or missing:
        raise ValueError(
            f"model entry {model}: unknown keys {unknown}, missing keys {missing}; "
            f"allowed keys: {list(MODEL_KEYS)}"
        )
    if model["method"] == "random" and (model.get("method_params") or model.get("train")):
        raise ValueError("method 'random' trains nothing: remove method_params and train")


def pretrain(
    manifests: Sequence[str | Path],
    weights: str | Path,
    model: dict,
    channels: Sequence[str] = CHANNELS,
    seed: int = 0,
    metrics: str | Path | None = None,
    ckpt: str | Path | None = None,
    curves: str | Path | None = None,
    device: str = "cpu",
    num_workers: int = 0,
) -> None:
    """Train one configured model run and export its backbone to ``weights``.

    Parameters
    ----------
    manifests : per-plate manifests of the training plates.
    weights : output ``weights.pt`` (``paintssl.backbones.export_weights`` format).
    model : one ``config["models"]`` entry: ``method`` (``random`` exports the seeded
        initialisation untrained, or a key of ``OBJECTIVES``), ``backbone`` (timm name),
        ``img_size``, optional ``backbone_kwargs`` (e.g. ``patch_size``), ``method_params``
        (objective ``__init__`` kwargs) and ``train`` (``TrainConfig`` fields).
    channels : channel names, in the manifests' order.
    seed : seeds the initialisation and, unless ``train.seed`` is set, the training run.
    metrics : JSON-lines metrics (default: ``metrics.jsonl`` beside ``weights``).
    ckpt : resume checkpoint, outside Snakemake's outputs (default: ``ckpt/last.pt`` beside).
    curves : optional PNG of the training curves.
    device : ``cpu`` or ``cuda`` (torchrun ranks use their ``LOCAL_RANK`` GPU).
    num_workers : DataLoader worker processes, unless ``train.num_workers`` is set.
    """
    check_model_entry(model)
    mean, std = channel_stats(manifests, channels)
    log.info("channel mean %s std %s from %d manifests", mean, std, len(manifests))
    name, img_size, method = model["backbone"], int(model["img_size"]), model["method"]
    kwargs = dict(model.get("backbone_kwargs") or {})
    if method != "random":
        kwargs.update(objective_class(method).backbone_kwargs)
    torch.manual_seed(seed)
    backbone = create_backbone(name, img_size=img_size, in_chans=len(channels), **kwargs)
    if method != "random":
        objective = build_objective(method, backbone, dict(model.get("method_params") or {}))
        run = {"seed": seed, "num_workers": num_workers, **(model.get("train") or {})}
        cfg = TrainConfig.from_dict(run)
        dataset = SiteViews(manifests, objective.view_transform(), mean, std, channels)
        weights_dir = Path(weights).parent
        metrics = Path(metrics) if metrics else weights_dir / "metrics.jsonl"
        ckpt = Path(ckpt) if ckpt else weights_dir / "ckpt" / "last.pt"
        hp = train(objective, dataset, cfg, ckpt, metrics, device)
        log.info("trained %s for %d steps: %s", method, hp.total_steps, hp)
        backbone = objective.export_backbone()
        if curves and is_main_process():
            plot_training_curves(metrics, curves)
    elif metrics:
        Path(metrics).write_text("")  # nothing trained, nothing to log
    if is_main_process():
        export_weights(weights, backbone, name, img_size, channels, mean, std, kwargs)
