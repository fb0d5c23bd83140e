"""One trainer for every SSL objective (``python -m paintssl.pretrain`` runs it under torchrun).

The loop never branches on the method: it calls the objective's three hooks and reads its
``optim_defaults``. Batches, augmentations and model randomness are functions of
``(seed, step)``, so a killed or preempted run that resumes from ``ckpt`` ends with the same
weights as an uninterrupted one (to float round-off on CPU).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from paintssl.pretrain.data import StepBatches, step_loader
from paintssl.pretrain.objectives import Objective, OptimDefaults, Progress
from paintssl.pretrain.preemption import Preempted, StopRequest
from paintssl.tables import atomic_path

log = logging.getLogger(__name__)

RUNTIME_KEYS = ("num_workers", "ckpt_every", "log_every")
"""TrainConfig fields that may change between a run and its resumption."""


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings; fields left ``None`` take the method's ``OptimDefaults``.

    ``steps`` (when set) overrides ``epochs``. ``batch_size`` is the global batch (split
    across processes); ``lr`` is the rate at the method's ``lr_batch`` and is scaled
    linearly to ``batch_size``. ``amp=None`` means bf16 autocast on CUDA only.
    """

    epochs: float = 200.0
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_batch: int | None = None
    min_lr: float = 1e-6
    warmup_epochs: float | None = None
    weight_decay: float | None = None
    weight_decay_end: float | None = None
    betas: tuple[float, float] | None = None
    clip_grad: float | None = None
    ckpt_every: int = 500
    log_every: int = 1
    amp: bool | None = None
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.betas is not None:
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"train.steps must be >= 1, got {self.steps}")
        if self.ckpt_every < 1 or self.log_every < 1:
            raise ValueError("train.ckpt_every and train.log_every must be >= 1")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a config mapping; unknown keys raise TypeError listing the valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise TypeError(f"unknown train keys {unknown}; valid: {valid}")
        return cls(**values)


@dataclass(frozen=True)
class Hparams:
    """TrainConfig resolved against a method's defaults and the dataset size."""

    batch_size: int
    total_steps: int
    warmup_steps: int
    steps_per_epoch: float
    lr: float
    min_lr: float
    weight_decay: float
    weight_decay_end: float
    betas: tuple[float, float]
    clip_grad: float


def resolve(cfg: TrainConfig, defaults: OptimDefaults, n_items: int) -> Hparams:
    """Fill unset fields from ``defaults``, scale the lr and convert epochs to steps."""

    def pick(name: str) -> object:
        value = getattr(cfg, name)
        return getattr(defaults, name) if value is None else value

    batch_size = int(pick("batch_size"))
    steps_per_epoch = n_items / batch_size
    total = cfg.steps or max(math.ceil(cfg.epochs * steps_per_epoch), 1)
    warmup = round(float(pick("warmup_epochs")) * steps_per_epoch)
    if warmup >= total:
        log.warning("warm-up of %d steps >= %d total steps; using %d", warmup, total, total // 2)
        warmup = total // 2
    return Hparams(
        batch_size=batch_size,
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


def param_groups(module: nn.Module) -> list[dict]:
    """Trainable parameters split into decayed weights and undecayed biases/norms/tokens."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        token = name.split(".")[-1] in {"cls_token", "pos_embed", "mask_token", "reg_token"}
        (no_decay if param.ndim <= 1 or name.endswith(".bias") or token else decay).append(param)
    return [
        {"params": decay, "apply_wd": True},
        {"params": no_decay, "apply_wd": False, "weight_decay": 0.0},
    ]


@dataclass(frozen=True)
class Runtime:
    """Process placement: rank, world size and device (DDP when started by torchrun)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that logs, checkpoints and exports."""
        return self.rank == 0


def setup_runtime(device: str) -> Runtime:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = torch.device(device)
    if target.type == "cuda":
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return Runtime(rank, world_size, target)


def is_main_process() -> bool:
    """Return True outside torchrun and on rank 0 under it."""
    return int(os.environ.get("RANK", "0")) == 0


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the global torch RNG at ``step`` (masking, drop path) on ``rank``."""
    return int(np.random.SeedSequence([seed, step, rank], spawn_key=(1,)).generate_state(1)[0])


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RUNTIME_KEYS}


def save_checkpoint(
    path: Path, objective: nn.Module, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig
) -> None:
    """Write tensors and plain python values to a temp file, then rename (atomic)."""
    state = {
        "objective": objective.state_dict(),
        "optimizer": opt.state_dict(),
        "step": int(step),
        "config": asdict(cfg),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def restore_checkpoint(
    path: Path, objective: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig
) -> int:
    """Load ``path`` if it exists (``weights_only=True``) and return its step, else 0."""
    if not path.exists():
        return 0
    device = next(objective.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    saved = TrainConfig.from_dict(state["config"])
    if _comparable(asdict(saved)) != _comparable(asdict(cfg)):
        raise ValueError(
            f"{path} was written with train config {asdict(saved)}, now {asdict(cfg)}; "
            "delete the checkpoint to start over or restore the old settings"
        )
    objective.load_state_dict(state["objective"])
    opt.load_state_dict(state["optimizer"])
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"])


class MetricsLog:
    """JSON lines, one per logged step; resuming drops records past the checkpoint."""

    def __init__(self, path: Path | None, resume_step: int) -> None:
        self.path = path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step and path.exists():
            records = [json.loads(line) for line in path.read_text().splitlines() if line]
            kept = [r for r in records if r["step"] <= resume_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        """Append one record."""
        if self.path is not None:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def _mean_over_processes(values: dict[str, torch.Tensor], runtime: Runtime) -> dict[str, float]:
    stacked = torch.stack(
        [v.detach().float().reshape(()).to(runtime.device) for v in values.values()]
    )
    if runtime.world_size > 1:
        dist.all_reduce(stacked)
        stacked /= runtime.world_size
    return dict(zip(values, stacked.tolist(), strict=True))


def train(
    objective: Objective,
    dataset: Dataset,
    cfg: TrainConfig,
    ckpt: str | Path,
    metrics: str | Path | None = None,
    device: str = "cpu",
) -> Hparams:
    """Train ``objective`` on ``dataset`` (items keyed ``(index, seed)``), resuming from ``ckpt``.

    Returns the resolved hyper-parameters. Checkpoints every ``cfg.ckpt_every`` steps and at
    the end; under torchrun only rank 0 writes files. On SIGTERM or SIGUSR1 it finishes the
    step, checkpoints and raises :class:`~paintssl.pretrain.preemption.Preempted` (exit 75).
    """
    runtime = setup_runtime(device)
    objective.to(runtime.device)
    hp = resolve(cfg, objective.optim_defaults, len(dataset))
    opt = torch.optim.AdamW(param_groups(objective), lr=hp.lr, betas=hp.betas)
    ckpt = Path(ckpt)
    step = restore_checkpoint(ckpt, objective, opt, cfg)
    lr_at = cosine_schedule(hp.lr, hp.min_lr, hp.total_steps, hp.warmup_steps)
    wd_at = cosine_schedule(hp.weight_decay, hp.weight_decay_end, hp.total_steps)
    model: nn.Module = objective
    if runtime.world_size > 1:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(
            objective, device_ids=ids, find_unused_parameters=True
        )
    sampler = StepBatches(
        len(dataset),
        hp.batch_size,
        cfg.seed,
        step,
        hp.total_steps,
        runtime.rank,
        runtime.world_size,
    )
    loader = step_loader(dataset, sampler, cfg.num_workers, runtime.device.type == "cuda")
    amp = runtime.device.type == "cuda" if cfg.amp is None else cfg.amp
    trainable = [p for group in opt.param_groups for p in group["params"]]
    log_file = MetricsLog(Path(metrics) if metrics and runtime.is_main else None, step)
    bar = tqdm(total=hp.total_steps, initial=step, file=sys.stderr, disable=not runtime.is_main)
    objective.train()
    with StopRequest() as stop:
        for views in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at[step]
                group["weight_decay"] = wd_at[step] if group["apply_wd"] else 0.0
            torch.manual_seed(step_seed(cfg.seed, step, runtime.rank))
            with torch.autocast(runtime.device.type, dtype=torch.bfloat16, enabled=amp):
                out = model([v.to(runtime.device, non_blocking=True) for v in views])
            if not torch.isfinite(out.loss):
                raise FloatingPointError(
                    f"loss is {out.loss.item()} at step {step}; lower the lr or check the inputs "
                    f"(last good checkpoint: {ckpt})"
                )
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            extra = {}
            if hp.clip_grad > 0:
                extra["grad_norm"] = nn.utils.clip_grad_norm_(trainable, hp.clip_grad)
            opt.step()
            step += 1
            objective.after_step(Progress(step, hp.total_steps, step / hp.steps_per_epoch))
            if step % cfg.log_every == 0 or step == hp.total_steps:
                values = _mean_over_processes({"loss": out.loss, **out.metrics, **extra}, runtime)
                epoch = step / hp.steps_per_epoch
                log_file.write({"step": step, "epoch": epoch, "lr": lr_at[step - 1],
                                "wd": wd_at[step - 1], **values})  # fmt: skip
                bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
            bar.update(1)
            if runtime.is_main and (step % cfg.ckpt_every == 0 or step == hp.total_steps):
                save_checkpoint(ckpt, objective, opt, step, cfg)
            signum = stop.agreed(runtime.world_size, runtime.device)
            if signum is not None and step < hp.total_steps:
                if runtime.is_main:
                    save_checkpoint(ckpt, objective, opt, step, cfg)
                bar.close()
                stopped = Preempted(step, ckpt, signum)
                log.warning("%s", stopped)
                raise stopped
    bar.close()
    return hp
