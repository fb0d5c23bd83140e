"""Pluggable SSL objectives; ``OBJECTIVES`` is the only place mapping a name to code."""

from __future__ import annotations

import inspect

from torch import nn

from paintssl.pretrain.objectives.base import Objective, OptimDefaults, Progress, StepOutput
from paintssl.pretrain.objectives.dino import DinoObjective
from paintssl.pretrain.objectives.mae import MaeObjective
from paintssl.pretrain.objectives.simclr import SimclrObjective

OBJECTIVES: dict[str, type[Objective]] = {
    "dino": DinoObjective,
    "mae": MaeObjective,
    "simclr": SimclrObjective,
}


def objective_class(method: str) -> type[Objective]:
    """Return the class registered for ``method``; unknown names list the valid ones."""
    try:
        return OBJECTIVES[method]
    except KeyError:
        known = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown method {method!r}; expected one of: {known}") from None


def build_objective(method: str, backbone: nn.Module, params: dict) -> Objective:
    """Instantiate ``method``; a misspelt hyper-parameter name raises TypeError."""
    cls = objective_class(method)
    valid = sorted(set(inspect.signature(cls.__init__).parameters) - {"self", "backbone"})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown method_params {unknown} for method {method!r}; valid: {valid}. Fix the "
            f"spelling or delete them"
        )
    return cls(backbone, **params)


__all__ = [
    "OBJECTIVES",
    "Objective",
    "OptimDefaults",
    "Progress",
    "StepOutput",
    "build_objective",
    "objective_class",
]
