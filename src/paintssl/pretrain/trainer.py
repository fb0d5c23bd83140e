"""One trainer for every SSL objective (``python -m paintssl.pretrain`` runs it under torchrun).

The loop never branches on the method: it calls the objective's three hooks and reads its
``optim_defaults``. Batches, augmentations and model randomness are functions of
``(seed, step)``, so a killed or preempted run that resumes from ``ckpt`` ends with the same
weights as an uninterrupted one (to float round-off on CPU).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from paintssl.pretrain.collapse import CollapseGuard, act_on
from paintssl.pretrain.data import StepBatches, step_loader
from paintssl.pretrain.objectives import Objective, Progress
from paintssl.pretrain.optim import (
    Hparams,
    TrainConfig,
    clip_grad,
    cosine_schedule,
    param_groups,
    resolve,
)
from paintssl.pretrain.preemption import Preempted, StopRequest
from paintssl.tables import atomic_path

log = logging.getLogger(__name__)

RUNTIME_KEYS = ("num_workers", "site_cache_mb", "ckpt_every", "log_every", "collapse")
"""TrainConfig fields that may change between a run and its resumption."""


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


def run_identity(cfg: TrainConfig, extra: dict | None = None) -> dict:
    """Describe the run a checkpoint must come from to be resumed.

    ``cfg`` less its runtime keys, plus ``extra`` (JSON-able: the model entry, the channels,
    the training plates).
    """
    train = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_KEYS}
    return json.loads(json.dumps({"train": train, **(extra or {})}, default=str))


def save_checkpoint(
    path: Path, objective: nn.Module, opt: torch.optim.Optimizer, step: int, identity: dict
) -> None:
    """Write tensors and plain python values to a temp file, then rename (atomic)."""
    state = {
        "objective": objective.state_dict(),
        "optimizer": opt.state_dict(),
        "step": int(step),
        "identity": identity,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(saved) | set(now))
    out = []
    for key in keys:
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def restore_checkpoint(
    path: Path, objective: nn.Module, opt: torch.optim.Optimizer, identity: dict
) -> int:
    """Resume from ``path`` (``weights_only=True``) and return its step; 0 to start afresh.

    A checkpoint of another run (its :func:`run_identity` differs: the model was changed, or
    the training plates) is not resumed: the run starts over and overwrites it, with a warning
    that lists what changed.
    """
    if not path.exists():
        return 0
    device = next(objective.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    changed = _differences(state.get("identity", {}), identity)
    if changed:
        log.warning("%s is from another run (%s): starting over", path, "; ".join(changed))
        return 0
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
    name: str = "model",
    identity: dict | None = None,
) -> Hparams:
    """Train ``objective`` on ``dataset`` (items keyed ``(index, seed)``), resuming from ``ckpt``.

    Returns the resolved hyper-parameters. Checkpoints every ``cfg.ckpt_every`` steps and at
    the end; under torchrun only rank 0 writes files. On SIGTERM or SIGUSR1 it finishes the
    step, checkpoints and raises :class:`~paintssl.pretrain.preemption.Preempted` (exit 75).
    A collapse (``cfg.collapse``) raises :class:`~paintssl.pretrain.collapse.CollapseError`
    naming ``name``, or warns once. ``identity`` (beside ``cfg``, see :func:`run_identity`)
    tells a checkpoint of this run from one of another, which is not resumed.
    """
    runtime = setup_runtime(device)
    objective.to(runtime.device)
    hp = resolve(cfg, objective.optim_defaults, len(dataset), objective.crops_per_item)
    groups = param_groups(objective, cfg.decay_tokens)
    opt = torch.optim.AdamW(groups, lr=hp.lr, betas=hp.betas)
    ckpt = Path(ckpt)
    identity = run_identity(cfg, identity)
    step = restore_checkpoint(ckpt, objective, opt, identity)
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
        hp.items_per_step,
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
    guard: CollapseGuard | None = CollapseGuard(cfg.collapse)
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
                extra["grad_norm"] = clip_grad(trainable, hp, cfg.clip_grad_per_param)
            opt.step()
            step += 1
            objective.after_step(Progress(step, hp.total_steps, step / hp.steps_per_epoch))
            if step % cfg.log_every == 0 or step == hp.total_steps:
                values = _mean_over_processes({"loss": out.loss, **out.metrics, **extra}, runtime)
                epoch = step / hp.steps_per_epoch
                record = {"step": step, "epoch": epoch, "lr": lr_at[step - 1],
                          "wd": wd_at[step - 1], **values}  # fmt: skip
                log_file.write(record)
                bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
                if guard is not None and (collapse := guard.update(record)) is not None:
                    guard = None  # every rank sees the same record: all stop, or warn once
                    act_on(collapse, cfg.collapse, name)
            bar.update(1)
            if runtime.is_main and (step % cfg.ckpt_every == 0 or step == hp.total_steps):
                save_checkpoint(ckpt, objective, opt, step, identity)
            signum = stop.agreed(runtime.world_size, runtime.device)
            if signum is not None and step < hp.total_steps:
                if runtime.is_main:
                    save_checkpoint(ckpt, objective, opt, step, identity)
                bar.close()
                stopped = Preempted(step, ckpt, signum)
                log.warning("%s", stopped)
                raise stopped
    bar.close()
    return hp
