"""Compare models: every table side by side, paired Wilcoxon tests, and the paper's table.

The paper's table (Kim et al. 2025, Table 1) sets every model beside one reference model
(``eval.reference``, CellProfiler features by default) on the headline metrics: the
relative change in % and, for the mAP metrics, the paired Wilcoxon p-value on per-group AP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from paintssl.tables import write_tsv

log = logging.getLogger(__name__)

KEYS = ["metric", "level", "setting", "variant"]
REFERENCE_METRIC = "perturbation_map"
HEADLINE: dict[str, str] = {  # metric: level, in the paper's order
    "perturbation_map": "batch",
    "target_map": "consensus",
    "cross_source_map": "source",
    "gene_family_ami": "consensus",
    "nsb_accuracy": "well",
}
COMPARISON_COLUMNS = [
    "metric",
    "level",
    "setting",
    "model",
    "reference",
    "value",
    "reference_value",
    "relative_change_percent",
    "wilcoxon_p_value",
]
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


def headline_table(wide: pd.DataFrame, tests: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Return the paper's table: each model's headline metrics relative to ``reference``.

    One row per metric x cell line x model: the observed values, ``100 * (value - ref) /
    |ref|`` and the Wilcoxon p-value of the per-group AP (mAP metrics only, else NA).
    """
    models = [c for c in wide.columns if c not in KEYS and c != reference]
    observed = wide[wide["variant"] == "observed"]
    p_values = tests.set_index(["metric", "setting", "model"])["p_value"]
    rows = []
    for metric, level in HEADLINE.items():
        part = observed[(observed["metric"] == metric) & (observed["level"] == level)]
        for _, values in part.iterrows():
            ref = values[reference]
            for model in models:
                change = 100 * (values[model] - ref) / abs(ref) if ref else np.nan
                key = (metric, values["setting"], model)
                rows.append(
                    {"metric": metric, "level": level, "setting": values["setting"],
                     "model": model, "reference": reference, "value": values[model],
                     "reference_value": ref, "relative_change_percent": change,
                     "wilcoxon_p_value": p_values.get(key, np.nan)}
                )  # fmt: skip
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def compare_models(
    tables: Mapping[str, str | Path],
    ap_tables: Mapping[str, str | Path],
    summary_out: str | Path,
    wilcoxon_out: str | Path,
    comparison_out: str | Path,
    baselines: Sequence[str] = (),
    reference: str | None = None,
) -> None:
    """Write the side-by-side summary, Wilcoxon tests and the paper's table.

    The Wilcoxon reference is the baseline model with the highest observed perturbation
    mAP (with no baselines among the models, the best model overall). The paper's table
    sets every model beside ``reference`` (CellProfiler features in the paper); when that
    model was not evaluated, beside the Wilcoxon reference, and its log line says so.
    """
    unknown = sorted(set(baselines) - set(tables))
    if unknown:
        raise ValueError(f"baselines {unknown} are not evaluated models {sorted(tables)}")
    wide = side_by_side(tables)
    best_baseline = reference_model(wide, list(baselines) or list(tables))
    tests = paired_wilcoxon(ap_tables, best_baseline)
    if reference not in tables:
        log.warning("reference %r was not evaluated: the paper's table uses %s (add %r to "
                    "run_models for the paper's comparison)", reference, best_baseline,
                    reference)  # fmt: skip
        reference = best_baseline
    against = tests if reference == best_baseline else paired_wilcoxon(ap_tables, reference)
    write_tsv(wide, summary_out)
    write_tsv(tests, wilcoxon_out)
    write_tsv(headline_table(wide, against, reference), comparison_out)
