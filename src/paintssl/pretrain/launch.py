"""Run one pretraining job in this process, or as ``processes`` torchrun ranks (multi-GPU).

With N > 1 processes the job's keyword arguments go to a YAML file beside the checkpoint and
``torchrun --standalone --nproc-per-node N -m paintssl.pretrain --config <file>`` runs them
(an argument list, never a shell string: no user value is interpolated into a command). The
inputs and outputs are those of the single-process path; rank 0 alone writes them.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import yaml

from paintssl.pretrain.config import ModelConfig
from paintssl.pretrain.run import pretrain

log = logging.getLogger(__name__)


def torchrun_command(config: Path, processes: int) -> list[str]:
    """Return the torchrun argument list that runs ``config`` on ``processes`` local ranks."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    return [torchrun, "--standalone", "--nproc-per-node", str(processes),
            "-m", "paintssl.pretrain", "--config", str(config)]  # fmt: skip


def launch_pretrain(model: ModelConfig, ckpt: str | Path, processes: int = 1, **kwargs) -> None:
    """:func:`~paintssl.pretrain.run.pretrain` in this process, or on ``processes`` ranks.

    Parameters
    ----------
    model, ckpt, kwargs
        The arguments of :func:`~paintssl.pretrain.run.pretrain` (paths as strings).
    processes
        Ranks to start: the job's GPUs on CUDA (1: no torchrun).
    """
    if processes <= 1:
        pretrain(model=model, ckpt=ckpt, **kwargs)
        return
    config = Path(ckpt).with_name("torchrun.yaml")
    config.parent.mkdir(parents=True, exist_ok=True)
    values = {**kwargs, "model": asdict(model), "ckpt": str(ckpt)}
    config.write_text(yaml.safe_dump({k: _plain(v) for k, v in values.items()}))
    command = torchrun_command(config, processes)
    log.info("starting %d ranks: %s", processes, " ".join(command))
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise RuntimeError(f"torchrun exited with {done.returncode}; see the ranks' log above")


def _plain(value: object) -> object:
    """YAML-safe: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
