"""Training-curve figure from a pretraining run's ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from paintssl.figures.common import save_figure
from paintssl.pretrain.collapse import CollapseConfig, first_collapse


def read_metrics(metrics_jsonl: str | Path) -> pd.DataFrame:
    """One row per logged step."""
    lines = Path(metrics_jsonl).read_text().splitlines()
    return pd.DataFrame([json.loads(line) for line in lines if line])


def collapse_verdict(table: pd.DataFrame, config: CollapseConfig, model: str) -> str:
    """Return the collapse guard's verdict on a logged run: one line for the figure's title."""
    found = first_collapse(table.to_dict("records"), config)
    if found is None:
        watched = [m for m in config.signatures() if m in table.columns]
        return f"{model}: no collapse ({', '.join(watched) or 'no monitor logged'})"
    return f"COLLAPSE: {found.describe(model)}"


def plot_training_curves(
    metrics_jsonl: str | Path,
    out_png: str | Path,
    out_pdf: str | Path,
    collapse: CollapseConfig | None = None,
    model: str = "model",
) -> str:
    """One panel per logged quantity (loss, lr, wd, collapse monitors...) against step.

    The title is the collapse guard's verdict (``collapse``: the run's ``train.collapse``
    settings), which is returned; the guard's limits are drawn on the monitors' panels.
    """
    table = read_metrics(metrics_jsonl)
    if table.empty:
        raise ValueError(f"{metrics_jsonl}: no metrics logged")
    collapse = collapse or CollapseConfig()
    limits = {metric: limit for metric, (limit, _) in collapse.signatures().items()}
    keys = [c for c in table.columns if c not in ("step", "epoch")]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows + 0.4), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.plot(table["step"], table[key], lw=1)
        if key in limits:
            ax.axhline(limits[key], color="tab:red", ls="--", lw=0.8, label="collapse limit")
            ax.legend(fontsize=7, loc="best")
        ax.set_title(key)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    verdict = collapse_verdict(table, collapse, model)
    fig.suptitle(verdict, fontsize=9, color="tab:red" if verdict.startswith("COLLAPSE") else "k")
    fig.tight_layout()
    save_figure(fig, out_png, out_pdf)
    return verdict
