"""Collapse guard: a run whose monitors sit at a collapse signature stops (or warns) by name.

The objectives log the monitors (``objectives.base.embedding_std``,
``objectives.dino.teacher_stats``), each scaled to [0, 1]:

- ``teacher_information_norm``: (H(mean p) - mean H(p)) / log K of the teacher's output
  distributions p over K prototypes; 0 = every crop gets the same distribution: DINO's
  uniform collapse (a constant teacher that the centre cancels), its one-prototype collapse,
  or anything in between;
- ``embedding_std``: spread of the L2-normalised backbone features (1 = spread over the
  sphere, 0 = one point).

A signature that holds for ``patience`` consecutive logged steps is a collapse. No torch here:
the figures read the same verdict from ``metrics.jsonl``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from paintssl.pretrain.config import require_fields

log = logging.getLogger(__name__)

POLICIES = ("error", "warn")


class CollapseError(RuntimeError):
    """A pretraining run collapsed (policy ``error``)."""


@dataclass(frozen=True)
class CollapseConfig:
    """When a run counts as collapsed, and what then happens (``train.collapse``).

    Attributes
    ----------
    policy : ``error`` stops the run with :class:`CollapseError`; ``warn`` logs and goes on.
    patience : consecutive logged steps a signature must hold.
    min_teacher_information : limit of ``teacher_information_norm``.
    min_embedding_std : limit of ``embedding_std``.
    """

    policy: str = "error"
    patience: int = 20
    min_teacher_information: float = 0.02
    min_embedding_std: float = 0.02

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(
                f"train.collapse.policy must be one of {POLICIES}, not {self.policy!r}"
            )
        if self.patience < 1:
            raise ValueError(f"train.collapse.patience must be >= 1, got {self.patience}")

    @classmethod
    def from_value(cls, value: CollapseConfig | Mapping | None) -> CollapseConfig:
        """From a ``train.collapse`` mapping; unknown keys raise TypeError naming the valid ones."""
        if isinstance(value, CollapseConfig):
            return value
        values = dict(value or {})
        require_fields(cls, values, "train.collapse")
        return cls(**values)

    def signatures(self) -> dict[str, tuple[float, str]]:
        """Monitor -> (the limit it must not stay below, what staying below means)."""
        return {
            "teacher_information_norm": (
                self.min_teacher_information,
                "the teacher gives every crop the same distribution",
            ),
            "embedding_std": (self.min_embedding_std, "the features sit on one point"),
        }


@dataclass(frozen=True)
class Collapse:
    """One detected collapse: the monitor, its value and the step it had held ``patience`` for."""

    metric: str
    meaning: str
    step: int
    value: float
    limit: float
    patience: int

    def describe(self, model: str) -> str:
        """One sentence naming the model, the step and the metric."""
        return (
            f"{model} collapsed at step {self.step}: {self.metric} = {self.value:.4f}, below "
            f"{self.limit} for {self.patience} logged steps ({self.meaning})"
        )


class CollapseGuard:
    """Feed it each logged record; it returns a :class:`Collapse` once a signature has held."""

    def __init__(self, config: CollapseConfig) -> None:
        self.config = config
        self.streaks = dict.fromkeys(config.signatures(), 0)

    def update(self, record: Mapping[str, float]) -> Collapse | None:
        """Count this record against every signature; the first to reach patience wins."""
        found = None
        patience = self.config.patience
        for metric, (limit, meaning) in self.config.signatures().items():
            value = record.get(metric)
            if value is None:
                continue
            self.streaks[metric] = self.streaks[metric] + 1 if value < limit else 0
            if found is None and self.streaks[metric] >= patience:
                found = Collapse(metric, meaning, int(record["step"]), value, limit, patience)
        return found


def first_collapse(
    records: Iterable[Mapping[str, float]], config: CollapseConfig
) -> Collapse | None:
    """Return the first collapse in a run's logged records, or None (what the figures show)."""
    guard = CollapseGuard(config)
    for record in records:
        found = guard.update(record)
        if found is not None:
            return found
    return None


def act_on(collapse: Collapse | None, config: CollapseConfig, model: str) -> None:
    """Raise :class:`CollapseError` (policy error) or log a warning (policy warn)."""
    if collapse is None:
        return
    message = collapse.describe(model)
    if config.policy == "error":
        raise CollapseError(
            f"{message}. Change the model's method_params or train settings (teacher "
            "temperature, momentum, lr, augmentations) and rerun; set train.collapse.policy: "
            "warn to keep training regardless"
        )
    log.warning("%s (train.collapse.policy: warn, training goes on)", message)
