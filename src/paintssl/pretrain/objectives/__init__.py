"""Pluggable SSL objectives; ``OBJECTIVES`` is the only place mapping a name to code."""

from __future__ import annotations

import inspect

from torch import nn

from paintssl.pretrain.objectives.base import Objective, OptimDefaults, Progress, StepOutput
from paintssl.pretrain.objectives.dino import DinoObjective
from paintssl.pretrain.objectives.mae import MaeObjective
from paintssl.pretrain.objectives.simclr import SimclrObjective
from paintssl.pretrain.objectives.sslprofiler import SslProfilerObjective

OBJECTIVES: dict[str, type[Objective]] = {
    "dino": DinoObjective,
    "mae": MaeObjective,
    "simclr": SimclrObjective,
    "sslprofiler": SslProfilerObjective,
}


def objective_class(method: str) -> type[Objective]:
    """Return the class registered for ``method``; unknown names list the valid ones."""
    try:
        return OBJECTIVES[method]
    except KeyError:
        known = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown method {method!r}; expected one of: {known}") from None


def accepted_params(cls: type[Objective]) -> set[str]:
    """Keyword arguments of ``cls.__init__``, with those its ``**kwargs`` pass to its parent."""
    names: set[str] = set()
    for klass in cls.__mro__:
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return names


def build_objective(method: str, backbone: nn.Module, params: dict) -> Objective:
    """Instantiate ``method``; a misspelt hyper-parameter name raises TypeError."""
    cls = objective_class(method)
    valid = sorted(accepted_params(cls) - {"self", "backbone"})
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
