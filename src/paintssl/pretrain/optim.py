"""Optimisation settings of a run: ``TrainConfig``, resolved ``Hparams``, schedules, clipping.

No training loop here (``paintssl.pretrain.trainer`` has it); the parameter groups and
gradient clipping follow the reference implementations (DINO's ``utils.py``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from paintssl.pretrain.collapse import CollapseConfig
from paintssl.pretrain.config import require_fields
from paintssl.pretrain.objectives import OptimDefaults
from paintssl.pretrain.objectives.base import Span

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings; fields left ``None`` take the method's ``OptimDefaults``.

    ``steps`` (when set) overrides ``epochs``. ``batch_size`` is the global batch (split
    across processes) in the method's unit (``Objective.crops_per_item`` crops per site:
    MAE counts crops); ``lr`` is the rate at the method's ``lr_batch`` and is scaled
    linearly to ``batch_size``. The lr warm-up is ``warmup_epochs`` or ``warmup_fraction``
    of the run. ``clip_grad_per_param`` clips each parameter's gradient norm to
    ``clip_grad`` (DINO's ``utils.clip_gradients``; False: one global norm).
    ``decay_tokens`` applies weight decay to ``cls_token``/``pos_embed``/``mask_token`` as
    DINO's and MAE's parameter groups do (only biases and 1-d tensors are exempt).
    ``amp=None`` means bf16 autocast on CUDA only. ``site_cache_mb``: decoded training
    sites kept in memory by each rank, shared out among its DataLoader workers (0: none).
    ``collapse``: see :class:`~paintssl.pretrain.collapse.CollapseConfig`.
    """

    epochs: float = 200.0
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_batch: int | None = None
    min_lr: float = 1e-6
    warmup_epochs: float | None = None
    warmup_fraction: float | None = None
    weight_decay: float | None = None
    weight_decay_end: float | None = None
    betas: tuple[float, float] | None = None
    clip_grad: float | None = None
    clip_grad_per_param: bool = True
    decay_tokens: bool = True
    ckpt_every: int = 500
    log_every: int = 1
    amp: bool | None = None
    seed: int = 0
    num_workers: int = 0
    site_cache_mb: float = 2048.0
    collapse: CollapseConfig = field(default_factory=CollapseConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "collapse", CollapseConfig.from_value(self.collapse))
        self.warmup(default_epochs=0.0)  # checks the pair now, not when training starts
        if self.betas is not None:
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"train.steps must be >= 1, got {self.steps}")
        if self.site_cache_mb < 0:
            raise ValueError(f"train.site_cache_mb must be >= 0, got {self.site_cache_mb}")
        if self.ckpt_every < 1 or self.log_every < 1:
            raise ValueError("train.ckpt_every and train.log_every must be >= 1")

    def warmup(self, default_epochs: float) -> Span:
        """Return the lr warm-up: ``warmup_epochs`` or ``warmup_fraction``, else the default."""
        return Span.of("warmup", self.warmup_epochs, self.warmup_fraction, default_epochs)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a config mapping; unknown keys raise TypeError listing the valid ones."""
        require_fields(cls, values, "train")
        return cls(**values)


@dataclass(frozen=True)
class Hparams:
    """TrainConfig resolved against a method's defaults and the dataset size."""

    batch_size: int
    items_per_step: int
    total_steps: int
    warmup_steps: int
    steps_per_epoch: float
    lr: float
    min_lr: float
    weight_decay: float
    weight_decay_end: float
    betas: tuple[float, float]
    clip_grad: float


def resolve(
    cfg: TrainConfig, defaults: OptimDefaults, n_items: int, crops_per_item: int = 1
) -> Hparams:
    """Fill unset fields from ``defaults``, scale the lr and convert epochs to steps.

    ``crops_per_item``: batch units one dataset item gives (the batch counts crops).
    """

    def pick(name: str) -> object:
        value = getattr(cfg, name)
        return getattr(defaults, name) if value is None else value

    batch_size = int(pick("batch_size"))
    if batch_size % crops_per_item:
        raise ValueError(
            f"train.batch_size {batch_size} counts crops: make it a multiple of the "
            f"{crops_per_item} crops each site gives"
        )
    items_per_step = batch_size // crops_per_item
    steps_per_epoch = n_items / items_per_step
    total = cfg.steps or max(math.ceil(cfg.epochs * steps_per_epoch), 1)
    warmup = cfg.warmup(float(defaults.warmup_epochs)).steps(steps_per_epoch, total)
    if warmup >= total:
        log.warning("warm-up of %d steps >= %d total steps; using %d", warmup, total, total // 2)
        warmup = total // 2
    return Hparams(
        batch_size=batch_size,
        items_per_step=items_per_step,
        total_steps=int(total),
        warmup_steps=int(warmup),
        steps_per_epoch=steps_per_epoch,
        lr=float(pick("lr")) * batch_size / int(pick("lr_batch")),
        min_lr=float(cfg.min_lr),
        weight_decay=float(pick("weight_decay")),
        weight_decay_end=float(pick("weight_decay_end")),
        betas=tuple(float(b) for b in pick("betas")),
        clip_grad=float(pick("clip_grad")),
    )


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, start: float = 0.0
) -> list[float]:
    """Per-step values: linear warm-up ``start -> base``, then cosine ``base -> final``.

    Exactly ``total_steps`` python floats; the first is ``start`` (``base`` without warm-up),
    step ``warmup_steps`` is ``base`` and the last is ``final``.
    """
    warm = np.linspace(start, base, warmup_steps, endpoint=False)
    n = total_steps - warmup_steps
    t = np.arange(n) / max(n - 1, 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * t))
    return [float(v) for v in np.concatenate([warm, cosine])]


TOKENS = frozenset({"cls_token", "pos_embed", "mask_token", "reg_token"})
"""Parameters that ``decay_tokens=False`` exempts from weight decay."""


def param_groups(module: nn.Module, decay_tokens: bool = True) -> list[dict]:
    """Trainable parameters split into decayed weights and undecayed biases/norms (and tokens).

    With ``decay_tokens`` (DINO's ``get_params_groups``) only biases and 1-d tensors are
    exempt; without it, the tokens of :data:`TOKENS` are too.
    """
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        token = not decay_tokens and name.split(".")[-1] in TOKENS
        (no_decay if param.ndim <= 1 or name.endswith(".bias") or token else decay).append(param)
    return [
        {"params": decay, "apply_wd": True},
        {"params": no_decay, "apply_wd": False, "weight_decay": 0.0},
    ]


def clip_gradients(params: list[nn.Parameter], clip: float) -> torch.Tensor:
    """Scale each parameter's gradient to norm <= ``clip`` (DINO's ``utils.clip_gradients``).

    Returns the global gradient norm before clipping (what the metrics log shows).
    """
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads)
    for grad, norm in zip(grads, norms, strict=True):
        grad.mul_((clip / (norm + 1e-6)).clamp(max=1.0))
    return torch.linalg.vector_norm(torch.stack(norms))


def clip_grad(params: list[nn.Parameter], hp: Hparams, per_param: bool) -> torch.Tensor:
    """Clip per parameter (DINO) or by one global norm (``torch``'s ``clip_grad_norm_``)."""
    if per_param:
        return clip_gradients(params, hp.clip_grad)
    return nn.utils.clip_grad_norm_(params, hp.clip_grad)
