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
class Span:
    """The start of a run, in epochs or as a fraction of the run (a schedule's warm-up).

    Fractions keep a recipe the same whatever the run's length (a 300-step run and a
    200-epoch run); epochs are the papers' unit. Give one of them.
    """

    epochs: float | None = None
    fraction: float | None = None

    @classmethod
    def of(
        cls, name: str, epochs: float | None, fraction: float | None, default_epochs: float
    ) -> Span:
        """``<name>_epochs`` or ``<name>_fraction`` (not both); neither = ``default_epochs``."""
        if epochs is not None and fraction is not None:
            raise ValueError(f"give {name}_epochs or {name}_fraction, not both")
        if fraction is not None and not 0 <= fraction <= 1:
            raise ValueError(f"{name}_fraction must be in [0, 1], got {fraction}")
        if epochs is not None and epochs < 0:
            raise ValueError(f"{name}_epochs must be >= 0, got {epochs}")
        if fraction is not None:
            return cls(fraction=fraction)
        return cls(epochs=default_epochs if epochs is None else epochs)

    def steps(self, steps_per_epoch: float, total_steps: int) -> int:
        """Length of the span in optimiser steps."""
        if self.fraction is not None:
            return round(self.fraction * total_steps)
        return round(self.epochs * steps_per_epoch)

    def passed(self, epoch: float, fraction: float) -> float:
        """Share of the span behind the run at ``epoch`` / ``fraction``, in [0, 1]."""
        length, now = (self.epochs, epoch) if self.fraction is None else (self.fraction, fraction)
        return 1.0 if length <= 0 else min(now / length, 1.0)


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
    sites_per_well: int | None = None
    """None: a sample is a site; else a sample is a well and its views come from this many of
    its sites (``pretrain.data.WellViews``; ``view_transform`` then takes the sites)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("epoch", torch.zeros((), dtype=torch.float64))
        self.register_buffer("fraction", torch.zeros((), dtype=torch.float64))

    @property
    def img_size(self) -> int:
        """Side of the backbone's native input."""
        return int(self.backbone.patch_embed.img_size[0])

    @property
    def crops_per_item(self) -> int:
        """Units of ``train.batch_size`` one site gives (1: the batch counts sites)."""
        return 1

    def view_transform(self) -> MultiCrop:
        """Per-sample CPU transform: site image and cell mask -> this method's views."""
        raise NotImplementedError

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        """Loss and metrics of one batch of views (each (B, C, H, W), normalised)."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, progress: Progress) -> None:
        """Run after each optimiser step (EMA teacher, schedules); records where the run is."""
        self.epoch.fill_(progress.epoch)
        self.fraction.fill_(progress.fraction)

    def span_passed(self, span: Span) -> float:
        """Share of ``span`` behind the run, in [0, 1]."""
        return span.passed(float(self.epoch), float(self.fraction))

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
