"""The objective contract shared by every SSL method, and helpers the methods share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from paintssl.pretrain.augment import MultiCrop


@dataclass(frozen=True)
class StepOutput:
    """Loss to minimise plus detached scalar metrics for the metrics log."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """Where training stands after an optimiser step."""

    step: int
    total_steps: int
    epoch: float

    @property
    def fraction(self) -> float:
        """Share of training done, in [0, 1]."""
        return min(self.step / max(self.total_steps, 1), 1.0)


@dataclass(frozen=True)
class OptimDefaults:
    """A method's paper optimiser settings; ``TrainConfig`` fields left unset take these.

    ``lr`` is the learning rate at batch ``lr_batch``; the trainer scales it linearly.
    """

    batch_size: int
    lr: float
    lr_batch: int
    warmup_epochs: float
    weight_decay: float
    weight_decay_end: float
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 0.0


class Objective(nn.Module):
    """One SSL method: a backbone plus the heads, views and state the method needs.

    The trainer only calls ``view_transform``, ``forward`` and ``after_step`` and reads
    ``optim_defaults``, so it never branches on the method name. Everything that must
    survive a restart is a parameter or a registered buffer (``state_dict`` is complete).
    """

    optim_defaults: ClassVar[OptimDefaults]
    backbone_kwargs: ClassVar[dict[str, object]] = {}
    """Extra ``create_backbone`` kwargs the method needs; recorded in the export too."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("epoch", torch.zeros((), dtype=torch.float64))

    @property
    def img_size(self) -> int:
        """Side of the backbone's native input."""
        return int(self.backbone.patch_embed.img_size[0])

    def view_transform(self) -> MultiCrop:
        """Per-sample CPU transform: site image and cell mask -> this method's views."""
        raise NotImplementedError

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        """Loss and metrics of one batch of views (each (B, C, H, W), normalised)."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, progress: Progress) -> None:
        """Run after each optimiser step (EMA teacher, schedules); records the epoch."""
        self.epoch.fill_(progress.epoch)

    def export_backbone(self) -> nn.Module:
        """Return the backbone whose weights become ``weights.pt``."""
        return self.backbone


def embedding_std(features: torch.Tensor) -> torch.Tensor:
    """Collapse monitor: per-dimension std of L2-normalised features, times sqrt(dim).

    About 1 for features spread over the sphere, 0 when all samples collapse to one point.
    """
    unit = F.normalize(features.detach().float(), dim=-1)
    return unit.std(dim=0).mean() * unit.shape[-1] ** 0.5


def pooled_features(backbone: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Return the exported feature: timm's own pooling, exactly as the embed stage uses it."""
    return backbone.forward_head(tokens, pre_logits=True)
