"""Training-curve figure from a pretraining run's ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from paintssl.figures.common import save_figure


def read_metrics(metrics_jsonl: str | Path) -> pd.DataFrame:
    """One row per logged step."""
    lines = Path(metrics_jsonl).read_text().splitlines()
    return pd.DataFrame([json.loads(line) for line in lines if line])


def plot_training_curves(
    metrics_jsonl: str | Path, out_png: str | Path, out_pdf: str | Path
) -> None:
    """One panel per logged quantity (loss, lr, wd, collapse monitors...) against step."""
    table = read_metrics(metrics_jsonl)
    if table.empty:
        raise ValueError(f"{metrics_jsonl}: no metrics logged")
    keys = [c for c in table.columns if c not in ("step", "epoch")]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.plot(table["step"], table[key], lw=1)
        ax.set_title(key)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, out_png, out_pdf)
