"""Stop a training run cleanly on SLURM's warning signal or on preemption, and say so.

SLURM sends ``SIGUSR1`` ahead of the time limit when asked (``sbatch --signal=USR1@300``)
and ``SIGTERM`` when it preempts or cancels a job.
:class:`StopRequest` records either signal; the trainer finishes the step in progress, writes
its checkpoint (atomically) and raises :class:`Preempted`, a ``SystemExit`` with
``PREEMPTED_EXIT_CODE`` so that the job fails visibly. Rerunning the job (Snakemake with
``--rerun-incomplete``, or SLURM's requeue) resumes from that checkpoint. DataLoader workers
ignore both signals: the main process decides when to stop.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 75
"""``EX_TEMPFAIL`` of sysexits.h: a temporary failure, rerun to continue."""


class Preempted(SystemExit):
    """Training stopped on a signal after checkpointing ``step``; exit code 75."""

    def __init__(self, step: int, ckpt: Path, signum: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step, self.ckpt, self.signum = step, ckpt, signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return (f"stopped by {name} after step {self.step}, checkpoint {self.ckpt}; "
                "rerun the job to resume from it")  # fmt: skip


class StopRequest:
    """Context manager that records ``STOP_SIGNALS`` instead of dying on them."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach it only
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        log.warning("received %s: stopping after this step", signal.Signals(signum).name)
        self.signum = signum

    def agreed(self, world_size: int, device: torch.device) -> int | None:
        """Return the signal if any process received one (all then stop at the same step)."""
        if world_size == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: leave ``STOP_SIGNALS`` to the main process."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
