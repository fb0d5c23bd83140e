"""Compare models: all evaluation tables side by side, and paired Wilcoxon tests on AP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from paintssl.tables import write_tsv

KEYS = ["metric", "level", "setting", "variant"]
REFERENCE_METRIC = "perturbation_map"
WILCOXON_COLUMNS = [
    "metric",
    "setting",
    "model",
    "reference",
    "n_pairs",
    "median_difference",
    "statistic",
    "p_value",
]


def side_by_side(tables: Mapping[str, str | Path]) -> pd.DataFrame:
    """One row per metric x level x setting x variant, one value column per model."""
    long = pd.concat(
        [pd.read_csv(path, sep="\t").assign(model=model) for model, path in tables.items()],
        ignore_index=True,
    )
    wide = long.pivot(index=KEYS, columns="model", values="value")
    return wide.reindex(columns=list(tables)).reset_index()


def reference_model(wide: pd.DataFrame, candidates: Sequence[str]) -> str:
    """Return the candidate with the highest mean observed perturbation mAP over settings."""
    observed = wide[(wide["metric"] == REFERENCE_METRIC) & (wide["variant"] == "observed")]
    scores = observed[list(candidates)].mean().fillna(-np.inf)
    return str(scores.idxmax())


def per_group_ap(path: str | Path) -> pd.DataFrame:
    """Mean AP per (metric, setting, group): per perturbation, target or family."""
    ap = pd.read_parquet(path)
    if ap.empty:
        return pd.DataFrame(columns=["metric", "setting", "group", "average_precision"])
    return ap.groupby(["metric", "setting", "group"], as_index=False)["average_precision"].mean()


def paired_wilcoxon(ap_tables: Mapping[str, str | Path], reference: str) -> pd.DataFrame:
    """Two-sided paired Wilcoxon test of each model's per-group AP against ``reference``."""
    groups = {model: per_group_ap(path) for model, path in ap_tables.items()}
    rows = []
    for model, table in groups.items():
        if model == reference:
            continue
        paired = table.merge(
            groups[reference], on=["metric", "setting", "group"], suffixes=("", "_ref")
        )
        for (metric, setting), part in paired.groupby(["metric", "setting"]):
            diff = part["average_precision"] - part["average_precision_ref"]
            test = wilcoxon(diff) if (diff != 0).any() else None
            rows.append(
                {
                    "metric": metric,
                    "setting": setting,
                    "model": model,
                    "reference": reference,
                    "n_pairs": len(part),
                    "median_difference": float(diff.median()),
                    "statistic": np.nan if test is None else float(test.statistic),
                    "p_value": 1.0 if test is None else float(test.pvalue),
                }
            )
    return pd.DataFrame(rows, columns=WILCOXON_COLUMNS)


def compare_models(
    tables: Mapping[str, str | Path],
    ap_tables: Mapping[str, str | Path],
    summary_out: str | Path,
    wilcoxon_out: str | Path,
    baselines: Sequence[str] = (),
) -> None:
    """Write the side-by-side summary and Wilcoxon tests against the best baseline.

    The reference is the baseline model with the highest observed perturbation mAP; with
    no baselines among the models, it is the best model overall.
    """
    unknown = sorted(set(baselines) - set(tables))
    if unknown:
        raise ValueError(f"baselines {unknown} are not evaluated models {sorted(tables)}")
    wide = side_by_side(tables)
    reference = reference_model(wide, list(baselines) or list(tables))
    write_tsv(wide, summary_out)
    write_tsv(paired_wilcoxon(ap_tables, reference), wilcoxon_out)
