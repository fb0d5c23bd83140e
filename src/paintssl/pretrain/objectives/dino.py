"""DINO: self-distillation with a momentum teacher (Caron et al. 2021; Kim et al. 2025)."""

from __future__ import annotations

import copy
import itertools
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from paintssl.pretrain.augment import AugmentConfig, CropGroup, MultiCrop
from paintssl.pretrain.backbones import vit_tokens
from paintssl.pretrain.objectives.base import (
    Objective,
    OptimDefaults,
    Progress,
    Span,
    StepOutput,
    embedding_std,
    pooled_features,
)


class DinoHead(nn.Module):
    """MLP (``layers`` linear layers, GELU) to a bottleneck, L2-normalise, weight-normed last layer.

    As DINO's ``DINOHead``: the MLP gets trunc-normal(0.02) weights, the last layer keeps
    ``nn.Linear``'s default init and is weight-normed, ``W = g * V / ||V||`` per output; with
    ``norm_last_layer`` the scale ``g`` is fixed at 1, else it is learnt (from 1).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int,
        bottleneck_dim: int,
        layers: int,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            blocks.append(nn.Linear(a, b))
            if i < layers - 1:
                blocks.append(nn.GELU())
        self.mlp = nn.Sequential(*blocks)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
        self.last_layer_scale = nn.Parameter(
            torch.ones(out_dim, 1), requires_grad=not norm_last_layer
        )

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        """Logits; with ``freeze_last_layer`` no gradient reaches the last layer."""
        weight = self.last_layer_scale * F.normalize(self.last_layer.weight, dim=-1)
        weight = weight.detach() if freeze_last_layer else weight
        return F.linear(F.normalize(self.mlp(x), dim=-1), weight)


def set_drop_path(backbone: nn.Module, rate: float) -> None:
    """Stochastic depth increasing linearly to ``rate`` over the blocks (timm's rule)."""
    depth = len(backbone.blocks)
    for i, block in enumerate(backbone.blocks):
        block_rate = rate * i / max(depth - 1, 1)
        block.drop_path1 = DropPath(block_rate) if block_rate > 0 else nn.Identity()
        block.drop_path2 = DropPath(block_rate) if block_rate > 0 else nn.Identity()


def dino_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Mean cross-entropy between centred, sharpened teacher crops and other student crops."""
    targets = [F.softmax((t - center) / teacher_temp, dim=-1) for t in teacher]
    log_probs = [F.log_softmax(s / student_temp, dim=-1) for s in student]
    terms = [
        -(q * log_p).sum(dim=-1).mean()
        for iq, q in enumerate(targets)
        for v, log_p in enumerate(log_probs)
        if v != iq
    ]
    return torch.stack(terms).mean()


def soft_cross_entropy(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Return the per-row cross-entropy of centred, sharpened teacher and student outputs.

    DINO's term for one pair of views; SSLProfiler's aggregation and iBOT terms.
    """
    targets = F.softmax((teacher - center) / teacher_temp, dim=-1)
    return -(targets * F.log_softmax(student / student_temp, dim=-1)).sum(dim=-1)


def teacher_stats(
    teacher: torch.Tensor, center: torch.Tensor, temp: float
) -> dict[str, torch.Tensor]:
    """Collapse monitors of the centred, sharpened teacher distributions p_i of a batch.

    ``teacher_entropy``: mean H(p_i); ``teacher_kl_uniform``: KL(mean p || uniform), in nats.
    ``teacher_information_norm``: (H(mean p) - mean H(p_i)) / log K, the information the
    teacher's output carries about its input, in [0, 1]: 0 when every crop gets the same
    distribution, whatever it is (uniform, one prototype, or in between), which is what
    ``pretrain.collapse`` watches.
    """
    probs = F.softmax((teacher - center) / temp, dim=-1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
    mean = probs.mean(0)
    log_k = math.log(probs.shape[-1])
    kl_uniform = log_k + (mean * torch.log(mean.clamp_min(1e-12))).sum()
    information = (log_k - kl_uniform - entropy) / log_k
    return {
        "teacher_entropy": entropy,
        "teacher_kl_uniform": kl_uniform,
        "teacher_information_norm": information,
    }


class DinoObjective(Objective):
    """DINO with the paper's defaults; scale crop sizes/counts and head width for tiny models."""

    optim_defaults = OptimDefaults(
        batch_size=128,
        lr=0.002,
        lr_batch=128,
        warmup_epochs=20,
        weight_decay=0.04,
        weight_decay_end=0.4,
        clip_grad=3.0,
    )

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 20000,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        head_layers: int = 3,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.01,
        warmup_teacher_temp_epochs: float | None = None,
        warmup_teacher_temp_fraction: float | None = None,
        center_momentum: float = 0.9,
        momentum_teacher: float = 0.9995,
        freeze_last_layer_epochs: float | None = None,
        freeze_last_layer_fraction: float | None = None,
        norm_last_layer: bool = True,
        drop_path_rate: float = 0.1,
        global_crops: int = 2,
        local_crops: int = 8,
        local_crop_size: int = 96,
        augment: dict | None = None,
    ) -> None:
        super().__init__(backbone)
        self.teacher_backbone = copy.deepcopy(backbone)  # before drop path: teacher has none
        set_drop_path(backbone, drop_path_rate)
        dim = backbone.num_features
        self.head = DinoHead(dim, out_dim, hidden_dim, bottleneck_dim, head_layers, norm_last_layer)
        self.teacher_head = copy.deepcopy(self.head)
        for param in [*self.teacher_backbone.parameters(), *self.teacher_head.parameters()]:
            param.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp_warmup = Span.of(
            "warmup_teacher_temp", warmup_teacher_temp_epochs, warmup_teacher_temp_fraction, 30.0
        )
        self.center_momentum, self.momentum_teacher = center_momentum, momentum_teacher
        self.last_layer_frozen = Span.of(
            "freeze_last_layer", freeze_last_layer_epochs, freeze_last_layer_fraction, 1.0
        )
        self.global_crops, self.local_crops = global_crops, local_crops
        self.local_crop_size = local_crop_size
        self.augment = AugmentConfig(**(augment or {}))

    def train(self, mode: bool = True) -> DinoObjective:
        """Student follows ``mode``; the teacher always runs in eval mode (no drop path)."""
        super().train(mode)
        self.teacher_backbone.eval()
        self.teacher_head.eval()
        return self

    def view_transform(self) -> MultiCrop:
        """Global crops at the backbone's size, then local crops, all Flip + Color."""
        return MultiCrop(
            [
                CropGroup(self.img_size, self.global_crops, self.augment),
                CropGroup(self.local_crop_size, self.local_crops, self.augment),
            ]
        )

    def last_layer_is_frozen(self) -> bool:
        """Whether the run is still within the ``freeze_last_layer`` span."""
        return self.span_passed(self.last_layer_frozen) < 1.0

    def current_teacher_temp(self) -> float:
        """Teacher temperature, warmed up linearly over the ``warmup_teacher_temp`` span."""
        ramp = self.span_passed(self.teacher_temp_warmup)
        return self.warmup_teacher_temp + ramp * (self.teacher_temp - self.warmup_teacher_temp)

    def _student(
        self, views: list[torch.Tensor], frozen: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs of all crops (same-size crops batched) and the global-crop features."""
        groups = [views[: self.global_crops], views[self.global_crops :]]
        outputs, global_features = [], None
        for group in filter(None, groups):
            features = pooled_features(self.backbone, vit_tokens(self.backbone, torch.cat(group)))
            global_features = features if global_features is None else global_features
            outputs.append(self.head(features, freeze_last_layer=frozen))
        return torch.cat(outputs), global_features

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        """DINO loss of the student on all crops against the teacher on the global crops."""
        loss, metrics, _ = self.distill(views[: self.global_crops], views)
        return StepOutput(loss, metrics)

    def teacher_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Teacher head outputs (fp32, no gradient) of a batch of same-size crops."""
        with torch.no_grad():
            tokens = vit_tokens(self.teacher_backbone, crops)
            return self.teacher_head(pooled_features(self.teacher_backbone, tokens)).float()

    def distill(
        self, teacher_views: list[torch.Tensor], student_views: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """DINO loss, metrics and the student's global-crop features; updates the centre.

        The student sees ``student_views`` (its global crops first, as many as the teacher's
        ``teacher_views``); the pair of teacher crop i and student crop i is left out.
        """
        teacher = self.teacher_logits(torch.cat(teacher_views))
        student, student_features = self._student(student_views, self.last_layer_is_frozen())
        temp = self.current_teacher_temp()
        loss = dino_loss(
            list(student.float().chunk(len(student_views))),
            list(teacher.chunk(len(teacher_views))),
            self.center,
            self.student_temp,
            temp,
        )
        metrics = teacher_stats(teacher, self.center, temp)
        self._update_center(teacher)
        metrics["embedding_std"] = embedding_std(student_features)
        metrics["teacher_temp"] = torch.tensor(temp)
        return loss, metrics, student_features

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor, center: torch.Tensor | None = None) -> None:
        """Move ``center`` (default: the CLS centre) towards the teacher's batch mean (EMA).

        The batch mean is taken over all processes under DDP.
        """
        center = self.center if center is None else center
        batch_center = teacher.sum(dim=0, keepdim=True)
        count = torch.tensor(float(len(teacher)), device=teacher.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            dist.all_reduce(count)
        momentum = self.center_momentum
        center.mul_(momentum).add_(batch_center / count, alpha=1 - momentum)

    def teacher_momentum(self, progress: Progress) -> float:
        """EMA momentum, cosine from ``momentum_teacher`` to 1 over training."""
        cosine = (math.cos(math.pi * progress.fraction) + 1) / 2
        return 1 - (1 - self.momentum_teacher) * cosine

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(student, teacher) modules; each teacher is an EMA of its student."""
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    @torch.no_grad()
    def after_step(self, progress: Progress) -> None:
        """Record the epoch and move the teacher towards the student (EMA)."""
        super().after_step(progress)
        momentum = self.teacher_momentum(progress)
        for student, teacher in self.ema_pairs():
            t_params = list(teacher.parameters())
            s_params = [p.detach() for p in student.parameters()]
            if not t_params:  # e.g. a mean pool
                continue
            torch._foreach_mul_(t_params, momentum)
            torch._foreach_add_(t_params, s_params, alpha=1 - momentum)

    def export_backbone(self) -> nn.Module:
        """Return the teacher backbone: its CLS token is the feature (DINO's practice)."""
        return self.teacher_backbone
