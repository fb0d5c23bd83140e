"""Ablation table: each variant of a model beside the full model, metric by metric.

Rows are metric x level x setting x model, with the full model's value and the change
(variant - full, in the metric's units); a negative change means the removed part helped.
The metrics are the headline retrieval metrics and the Cell Line Transferability
Challenge's kNN accuracy and macro-F1 in its four train -> test settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from paintssl.tables import write_tsv

ABLATION_METRICS: dict[str, str] = {  # metric: level
    "perturbation_map": "batch",
    "target_map": "consensus",
    "transfer_accuracy": "well",
    "transfer_macro_f1": "well",
}
ABLATION_COLUMNS = ["metric", "level", "setting", "model", "part_removed", "value",
                    "full_model", "full_value", "change"]  # fmt: skip


def ablation_table(
    wide: pd.DataFrame,
    full: str,
    variants: Mapping[str, str],
    beside: Sequence[str] = (),
    metrics: Mapping[str, str] = ABLATION_METRICS,
) -> pd.DataFrame:
    """Set each ablation variant (and the ``beside`` models) against the ``full`` model.

    Parameters
    ----------
    wide
        The side-by-side summary (``evaluate.compare.side_by_side``): one value column per
        model.
    full
        The full model's name.
    variants
        Part removed -> the model trained without it (e.g. ``cross_site_views`` ->
        ``sslprofiler_tiny_no_cross``).
    beside
        Other models to set against the full one (e.g. ``dino_tiny``, the method it builds
        on); their ``part_removed`` reads ``(other model)``.
    metrics
        Metric -> the profile level it is read at.
    """
    missing = sorted({full, *variants.values(), *beside} - set(wide.columns))
    if missing:
        raise ValueError(f"ablation models {missing} were not evaluated: add them to run_models")
    observed = wide[wide["variant"] == "observed"]
    compared = {**{model: part for part, model in variants.items()},
                **{model: "(other model)" for model in beside}}  # fmt: skip
    rows = []
    for metric, level in metrics.items():
        part = observed[(observed["metric"] == metric) & (observed["level"] == level)]
        for _, values in part.iterrows():
            keys = {"metric": metric, "level": level, "setting": values["setting"]}
            full_value = values[full]
            for model, removed in {full: "(none)", **compared}.items():
                change = values[model] - full_value
                rows.append({**keys, "model": model, "part_removed": removed,
                             "value": values[model], "full_model": full,
                             "full_value": full_value, "change": change})  # fmt: skip
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def write_ablation(
    summary: str | Path,
    out: str | Path,
    full: str,
    variants: Mapping[str, str],
    beside: Sequence[str] = (),
) -> pd.DataFrame:
    """Read the side-by-side ``summary.tsv``, write the ablation table, and return it."""
    table = ablation_table(pd.read_csv(summary, sep="\t"), full, variants, beside)
    write_tsv(table, out)
    return table
