"""Ablation figure: each variant's change against the full model, one panel per metric."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from paintssl.figures.common import no_data, save_figure


def plot_ablation(table: pd.DataFrame, out_png: str | Path, out_pdf: str | Path) -> None:
    """Draw grouped bars of ``change`` (variant - full) per setting, one panel per metric.

    ``table`` is ``evaluate.ablation.ablation_table``'s; the full model's own row (change 0)
    is left out, and its value is in each panel's title.
    """
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(4.5 * max(len(metrics), 1), 3.6),
                             squeeze=False)  # fmt: skip
    if not metrics:
        no_data(axes[0, 0], "no ablation metrics were evaluated")
    for ax, metric in zip(axes[0], metrics, strict=False):
        part = table[(table["metric"] == metric) & (table["part_removed"] != "(none)")]
        settings = list(dict.fromkeys(part["setting"]))
        labels = list(dict.fromkeys(part["part_removed"] + " (" + part["model"] + ")"))
        width = 0.8 / max(len(labels), 1)
        for i, label in enumerate(labels):
            rows = part[part["part_removed"] + " (" + part["model"] + ")" == label]
            change = rows.set_index("setting")["change"].reindex(settings)
            ax.bar(np.arange(len(settings)) + i * width, change, width, label=label)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(settings)) + 0.4 - width / 2, settings, rotation=30)
        full = table[(table["metric"] == metric) & (table["part_removed"] == "(none)")]
        values = ", ".join(f"{s} {v:.3f}" for s, v in zip(full["setting"], full["value"],
                                                          strict=True))  # fmt: skip
        ax.set_title(f"{metric}\nfull: {values}", fontsize=8)
        ax.set_ylabel("change against the full model")
    axes[0, 0].legend(fontsize=7, loc="best")
    save_figure(fig, out_png, out_pdf)
