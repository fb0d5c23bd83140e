"""Pretraining entry point: build a backbone, train it (or not) and export ``weights.pt``."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from paintssl.pretrain.backbones import create_backbone, export_weights
from paintssl.pretrain.config import ModelConfig, builds_network
from paintssl.pretrain.data import training_views
from paintssl.pretrain.objectives import build_objective, objective_class
from paintssl.pretrain.trainer import TrainConfig, is_main_process, train
from paintssl.tables import CHANNELS, atomic_path

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
    model: ModelConfig,
    channels: Sequence[str] = CHANNELS,
    seed: int = 0,
    metrics: str | Path | None = None,
    ckpt: str | Path | None = None,
    device: str = "cpu",
    num_workers: int = 0,
    name: str = "model",
) -> None:
    """Train one configured model run and export its backbone to ``weights``.

    Parameters
    ----------
    manifests : per-plate manifests of the training plates.
    weights : output ``weights.pt`` (``paintssl.pretrain.backbones.export_weights`` format).
    model : the model entry.
    channels : channel names, in the manifests' order.
    seed : seeds the initialisation and, unless ``train.seed`` is set, the training run.
    metrics : JSON-lines metrics (default: ``metrics.jsonl`` beside ``weights``).
    ckpt : resume checkpoint, outside Snakemake's outputs (default: ``ckpt/last.pt`` beside);
        the metrics are logged beside it as they come (Snakemake deletes the outputs of a
        killed job before its rerun) and copied to ``metrics`` at the end.
    device : ``cpu`` or ``cuda`` (torchrun ranks use their ``LOCAL_RANK`` GPU).
    num_workers : DataLoader worker processes, unless ``train.num_workers`` is set.
    name : the model's name in the config, for messages (a collapse names it).
    """
    if not builds_network(model.method):
        raise ValueError(f"method {model.method!r} builds no network: there is nothing to pretrain")
    mean, std = channel_stats(manifests, channels)
    log.info("channel mean %s std %s from %d manifests", mean, std, len(manifests))
    backbone_name, img_size, method = model.backbone, int(model.img_size), model.method
    kwargs = dict(model.backbone_kwargs)
    if method != "random":
        kwargs.update(objective_class(method).backbone_kwargs)
    torch.manual_seed(seed)
    backbone = create_backbone(backbone_name, img_size=img_size, in_chans=len(channels), **kwargs)
    if method != "random":
        objective = build_objective(method, backbone, dict(model.method_params))
        run = {"seed": seed, "num_workers": num_workers, **model.train}
        cfg = TrainConfig.from_dict(run)
        transform, sites = objective.view_transform(), objective.sites_per_well
        cache_mb = cfg.site_cache_mb / max(cfg.num_workers, 1)  # a cache per loading process
        dataset = training_views(manifests, transform, mean, std, channels, sites, cache_mb)
        weights_dir = Path(weights).parent
        metrics = Path(metrics) if metrics else weights_dir / "metrics.jsonl"
        ckpt = Path(ckpt) if ckpt else weights_dir / "ckpt" / "last.pt"
        plates = [str(Path(m).parent.name) for m in manifests]
        # train: in cfg; embed and weights_from: read only by the embedding jobs
        skip = ("train", "embed", "weights_from")
        entry = {k: v for k, v in asdict(model).items() if k not in skip}
        identity = {"model": entry, "channels": list(channels), "plates": plates}
        running_log = ckpt.with_name("metrics.jsonl")  # kept with the checkpoint it matches
        hp = train(objective, dataset, cfg, ckpt, running_log, device, name, identity)
        log.info("trained %s for %d steps: %s", method, hp.total_steps, hp)
        backbone = objective.export_backbone()
        if is_main_process():
            with atomic_path(metrics) as tmp:
                shutil.copyfile(running_log, tmp)
    elif metrics:
        Path(metrics).write_text("")  # nothing trained, nothing to log
    if is_main_process():
        export_weights(weights, backbone, backbone_name, img_size, channels, mean, std, kwargs)
