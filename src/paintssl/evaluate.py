"""Evaluate one model's profiles: one long-format TSV with every metric beside its chance level.

``results/eval/{model}.tsv`` has one row per metric x profile level x setting x variant:

==================  =======================================================================
column              meaning
==================  =======================================================================
metric              e.g. ``perturbation_map``, ``target_map``, ``nsb_accuracy`` (see below)
level               profile level the metric was computed on (well, batch, source, consensus)
setting             cell line (``Metadata_cell_line``); positives never pair across settings
variant             ``observed``; ``random_features`` (Gaussian noise of the same shape) and
                    ``shuffled_labels`` (metadata permuted against features within a setting)
                    are the chance levels; batch-effect metrics add ``gaussian_clusters`` and
                    ``random_labels`` (perfect separation / perfect mixing of batches)
value               the metric (mAP: mean over groups of the per-group mAP)
n_queries           profiles that served as queries (or were scored)
n_groups            groups averaged (perturbations, targets, families, batches), else NA
p_value             mAP: ``value`` against random APs (copairs' null, ``null_size`` draws;
                    ``metrics_map.summary_p_value``)
fraction_retrieved  mAP: share of groups with BH-corrected p < 0.05 (copairs' per-group test)
note                why a value is NaN, or what it was computed on
==================  =======================================================================

Controls (``Metadata_pert_type`` negcon/poscon) are left out of every retrieval metric, so
negative controls are never queries (the paper's protocol). The optional F1 table scores
the same (query, label) pairs as the mAP tasks: for targets, one pair per target of a query.

Speed: AP is computed by ``metrics_map`` (equal to copairs' AP, much faster); the well-level
metrics share one neighbour search per feature matrix (``metrics_knn``); silhouette, which
is quadratic, is scored on at most ``max_silhouette`` wells. ``benchmarks/bench_eval.py``
times every step on 100,000 planted wells.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.metrics_batch import LISI_KS, effect_metrics, gaussian_clusters
from paintssl.metrics_family import cluster_families
from paintssl.metrics_knn import Neighbours, nearest_match_accuracy, neighbour_search
from paintssl.metrics_map import (
    F1_KS,
    Ranking,
    ap_table,
    f1_at_k,
    labeling,
    rank_positives,
    summarize_map,
)

log = logging.getLogger(__name__)

SETTING = "Metadata_cell_line"
PERTURBATION = "Metadata_JCP2022"
TREATMENT = "trt"
TABLE_COLUMNS = [
    "metric",
    "level",
    "setting",
    "variant",
    "value",
    "n_queries",
    "n_groups",
    "p_value",
    "fraction_retrieved",
    "note",
]
F1_COLUMNS = ["metric", "level", "setting", "variant", "k", "value", "n_queries"]
EFFECT_LABELS = {"batch": "Metadata_Batch", "source": "Metadata_Source"}
VARIANTS = ("observed", "random_features", "shuffled_labels")
NEIGHBOURS = max(LISI_KS)  # one kNN search per feature matrix serves LISI, connectivity, NSB
NN_TASKS: dict[str, tuple[str, list[str], bool]] = {  # label, exclude same, multilabel
    "nsb_accuracy": (PERTURBATION, ["Metadata_Batch"], False),
    "nsbp_target_accuracy": ("Metadata_target", ["Metadata_Batch", PERTURBATION], True),
    "nsbp_gene_family_accuracy": ("Metadata_gene_family", ["Metadata_Batch", PERTURBATION], False),
}


@dataclass(frozen=True)
class MapTask:
    """A retrieval task: positives share ``sameby`` and differ in ``pos_diffby``."""

    level: str
    sameby: str
    pos_diffby: tuple[str, ...] = ()
    multilabel: bool = False


MAP_TASKS: dict[str, MapTask] = {
    "perturbation_map": MapTask("batch", PERTURBATION, ("Metadata_Batch",)),
    "cross_source_map": MapTask("source", PERTURBATION, ("Metadata_Source",)),
    "target_map": MapTask("consensus", "Metadata_target", multilabel=True),
    "gene_family_map": MapTask("consensus", "Metadata_gene_family", ("Metadata_gene",)),
}


def split_profiles(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Metadata (``Metadata_*`` columns) and the float feature matrix."""
    meta_cols = [c for c in df.columns if c.startswith("Metadata_")]
    feats = df.drop(columns=meta_cols).to_numpy(dtype=np.float64)
    return df[meta_cols].reset_index(drop=True), feats


def read_profiles(path: str | Path) -> pd.DataFrame:
    """Read a profile table and check the columns every metric needs."""
    df = pd.read_parquet(path)
    missing = {SETTING, PERTURBATION, "Metadata_pert_type"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing metadata columns {sorted(missing)}")
    if len(df.columns) == sum(c.startswith("Metadata_") for c in df.columns):
        raise ValueError(f"{path}: no feature columns (all columns start with 'Metadata_')")
    return df


def treatments(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``Metadata_pert_type`` is ``trt`` (controls are never queries)."""
    return df[df["Metadata_pert_type"] == TREATMENT].reset_index(drop=True)


def chance_inputs(
    meta: pd.DataFrame, feats: np.ndarray, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """Random features of the same shape, and the metadata shuffled against the features."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(feats.shape)
    return noise, meta.iloc[rng.permutation(len(meta))].reset_index(drop=True)


def by_setting(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Split a profile table per cell line, sorted by name."""
    for setting, part in df.groupby(SETTING, sort=True, dropna=False):
        yield str(setting), part.reset_index(drop=True)


def row(metric: str, level: str, setting: str, variant: str, **values: object) -> dict:
    """One row of the long-format table with NA for the fields not given."""
    out = dict.fromkeys(TABLE_COLUMNS, np.nan)
    out.update(metric=metric, level=level, setting=setting, variant=variant, note="")
    out.update(values)
    return out


def map_task_rows(
    metric: str, task: MapTask, profiles: pd.DataFrame, null_size: int, seed: int
) -> tuple[list[dict], list[dict], pd.DataFrame]:
    """mAP rows and F1-at-k rows (all settings and variants), observed per-query AP.

    The observed and shuffled labels share one similarity pass over the observed features.
    """
    rows, f1_rows, observed_ap = [], [], []
    missing = sorted({task.sameby, *task.pos_diffby} - set(profiles.columns))
    multilabel_col = task.sameby if task.multilabel else None
    for setting, part in by_setting(treatments(profiles)):
        if missing:
            note = f"no column(s) {missing}"
            rows.extend(
                row(metric, task.level, setting, v, n_queries=0, note=note) for v in VARIANTS
            )
            continue
        log.info("%s: ranking on %s profiles", metric, task.level)
        meta, feats = split_profiles(part)
        noise, shuffled = chance_inputs(meta, feats, seed)
        labelings = [
            labeling(m, [task.sameby], task.pos_diffby, multilabel_col) for m in (meta, shuffled)
        ]
        observed, shuffled_ranking = rank_positives(feats, labelings)
        (random,) = rank_positives(noise, labelings[:1])
        runs = {
            "observed": (meta, labelings[0], observed),
            "random_features": (meta, labelings[0], random),
            "shuffled_labels": (shuffled, labelings[1], shuffled_ranking),
        }
        log.info("%s: null, p-values and F1", metric)
        for variant, (var_meta, lab, ranking) in runs.items():
            ap = ap_table(var_meta, lab, ranking, multilabel_col)
            summary, _ = summarize_map(ap, task.sameby, null_size, seed)
            note = "" if len(ap) else f"no query with a positive pair (same {task.sameby})"
            rows.append(row(metric, task.level, setting, variant, **asdict(summary), note=note))
            f1_rows.extend(task_f1_rows(metric, task, setting, variant, ranking))
            if variant == "observed" and len(ap):
                observed_ap.append(ap.assign(metric=metric, level=task.level, setting=setting))
    ap_table_all = pd.concat(observed_ap, ignore_index=True) if observed_ap else pd.DataFrame()
    return rows, f1_rows, ap_table_all


def task_f1_rows(
    metric: str, task: MapTask, setting: str, variant: str, ranking: Ranking
) -> list[dict]:
    """F1 at k = 1..49 (step 2) for the positives and negatives of the mAP task."""
    name = metric.removesuffix("_map")
    return [
        {"metric": f"f1_{name}", "level": task.level, "setting": setting, "variant": variant,
         "k": k, "value": v, "n_queries": len(ranking.n_pos)}
        for k, v in zip(F1_KS, f1_at_k(ranking), strict=True)
    ]  # fmt: skip


def per_query_ap_table(ap: pd.DataFrame, task: MapTask) -> pd.DataFrame:
    """Keep the columns needed to pair queries across models (Wilcoxon tests)."""
    keys = [c for c in (PERTURBATION, "Metadata_Source", "Metadata_Batch") if c in ap.columns]
    group = ap[task.sameby].astype(str)
    cols = ["metric", "level", "setting", *keys, "average_precision", "n_pos_pairs"]
    return ap[cols].assign(group=group, n_total_pairs=ap["n_total_pairs"])


def well_rows(wells: pd.DataFrame, seed: int, max_silhouette: int | None) -> list[dict]:
    """NSB/NSBP accuracies and batch/source effects per cell line.

    One neighbour search per feature matrix (observed, random features) serves both.
    """
    rows = []
    for setting, part in by_setting(wells):
        meta, feats = split_profiles(part)
        noise = np.random.default_rng(seed).standard_normal(feats.shape)
        log.info("neighbour search on well profiles (observed and random features)")
        features = {"observed": feats, "random_features": noise}
        graphs = {name: neighbour_search(x, NEIGHBOURS) for name, x in features.items()}
        log.info("nearest-neighbour accuracies on well profiles")
        rows.extend(nearest_neighbour_rows(setting, meta, graphs, seed))
        rows.extend(effect_rows(setting, meta, features, graphs, seed, max_silhouette))
    return rows


def nearest_neighbour_rows(
    setting: str, meta: pd.DataFrame, graphs: Mapping[str, Neighbours], seed: int
) -> list[dict]:
    """NSB accuracy (label: perturbation), NSBP accuracy (labels: target, gene family).

    Queries and candidates are treatments with the label; shuffled labels permute the
    treatments' metadata against their features.
    """
    is_trt = (meta["Metadata_pert_type"] == TREATMENT).to_numpy()
    order = np.arange(len(meta))
    order[is_trt] = np.random.default_rng(seed).permutation(order[is_trt])
    shuffled = meta.iloc[order].reset_index(drop=True)
    runs = {
        "observed": (meta, graphs["observed"]),
        "random_features": (meta, graphs["random_features"]),
        "shuffled_labels": (shuffled, graphs["observed"]),
    }
    rows = []
    for variant, (var_meta, graph) in runs.items():
        for metric, (label, exclude, multilabel) in NN_TASKS.items():
            missing = sorted({label, *exclude} - set(var_meta.columns))
            if missing:
                note = f"no column(s) {missing}"
                rows.append(row(metric, "well", setting, variant, n_queries=0, note=note))
                continue
            pool = is_trt & var_meta[label].notna().to_numpy()
            excluded = [var_meta[c] for c in exclude]
            accuracy, n_queries = nearest_match_accuracy(
                graph, var_meta[label], excluded, pool, multilabel
            )
            note = "" if n_queries else "no well has a candidate neighbour"
            values = {"value": accuracy, "n_queries": n_queries, "note": note}
            rows.append(row(metric, "well", setting, variant, **values))
    return rows


def effect_runs(
    features: Mapping[str, np.ndarray],
    graphs: Mapping[str, Neighbours],
    labels: Mapping[str, pd.Series],
    seed: int,
) -> Iterator[tuple[np.ndarray, Neighbours, list[tuple[str, str, pd.Series]]]]:
    """(features, their kNN graph, [(label name, variant, labels)]) for the effect metrics.

    Baselines: random features, shuffled labels, Gaussian clusters per label (perfect
    separation) and the clusters with shuffled labels (perfect mixing).
    """
    rng = np.random.default_rng(seed)
    shuffled = {name: pd.Series(rng.permutation(x.to_numpy())) for name, x in labels.items()}
    yield (
        features["observed"],
        graphs["observed"],
        [(n, "observed", x) for n, x in labels.items()]
        + [(n, "shuffled_labels", x) for n, x in shuffled.items()],
    )
    yield (
        features["random_features"],
        graphs["random_features"],
        [(n, "random_features", x) for n, x in labels.items()],
    )
    for name, x in labels.items():
        log.info("neighbour search on Gaussian-cluster baselines")
        clusters = gaussian_clusters(x, features["observed"].shape[1], seed)
        runs = [(name, "gaussian_clusters", x), (name, "random_labels", shuffled[name])]
        graph = neighbour_search(clusters, NEIGHBOURS, groups=pd.factorize(x)[0])
        yield clusters, graph, runs


def effect_rows(
    setting: str,
    meta: pd.DataFrame,
    features: Mapping[str, np.ndarray],
    graphs: Mapping[str, Neighbours],
    seed: int,
    max_silhouette: int | None,
) -> list[dict]:
    """Silhouette, graph connectivity and LISI for batch and source, with baselines.

    All wells (controls included) are scored.
    """
    rows, labels = [], {}
    for name, col in EFFECT_LABELS.items():
        if col in meta:
            labels[name] = meta[col].astype("string").fillna("<NA>").reset_index(drop=True)
        else:
            rows.append(row(f"{name}_lisi", "well", setting, "observed", note=f"no {col}"))
    if not labels:
        return rows
    for feats, graph, runs in effect_runs(features, graphs, labels, seed):
        log.info("batch and source effects on well profiles")
        label_sets = [x for *_, x in runs]
        values = effect_metrics(
            feats, graph.index, graph.distances(), label_sets, max_silhouette, seed
        )
        for (name, variant, x), metrics in zip(runs, values, strict=True):
            rows.extend(
                row(f"{name}_{metric}", "well", setting, variant, value=value,
                    n_queries=len(x), n_groups=x.nunique())
                for metric, value in metrics
            )  # fmt: skip
    return rows


def family_rows(consensus: pd.DataFrame) -> list[dict]:
    """Gene-family AMI of complete-linkage clustering, per cell line (observed only)."""
    rows = []
    for setting, part in by_setting(treatments(consensus)):
        meta, feats = split_profiles(part)
        result = cluster_families(meta, feats)
        values = {"value": result.ami, "n_queries": len(result.families), "note": result.note}
        values["n_groups"] = result.families.nunique()
        rows.append(row("gene_family_ami", "consensus", setting, "observed", **values))
    return rows


def evaluate_model(
    profiles: Mapping[str, str | Path],
    out_tsv: str | Path,
    null_size: int = 10_000,
    seed: int = 0,
    ap_out: str | Path | None = None,
    f1_out: str | Path | None = None,
    max_silhouette: int | None = 20_000,
) -> None:
    """Compute every metric for one model and write the long-format table (module docstring).

    Parameters
    ----------
    profiles
        ``{level: path}`` for the levels well, batch, source and consensus; a metric whose
        level is absent gets a NaN row saying so.
    out_tsv
        Output TSV (``results/eval/{model}.tsv``).
    null_size, seed
        copairs null size and the seed of the null, random features and label shuffles.
    ap_out
        Optional Parquet of observed per-query AP (metric, setting, perturbation keys,
        ``group`` = the label retrieved), used to pair models in Wilcoxon tests.
    f1_out
        Optional TSV of F1 at k = 1..49 (step 2) for every mAP task, setting and variant.
    max_silhouette
        Silhouette on a random subset of at most this many wells (None: all wells).
    """
    unknown = set(profiles) - {"well", "batch", "source", "consensus"}
    if unknown:
        raise ValueError(
            f"unknown profile levels {sorted(unknown)}; use well, batch, source, consensus"
        )
    tables = {level: read_profiles(path) for level, path in profiles.items()}
    rows, f1_rows, ap_tables = [], [], []
    for metric, task in MAP_TASKS.items():
        if task.level not in tables:
            note = f"no {task.level}-level profiles given"
            rows.append(row(metric, task.level, "all", "observed", note=note))
            continue
        task_rows, task_f1, ap = map_task_rows(metric, task, tables[task.level], null_size, seed)
        rows.extend(task_rows)
        f1_rows.extend(task_f1)
        if len(ap):
            ap_tables.append(per_query_ap_table(ap, task))
    if "consensus" in tables:
        log.info("gene-family clustering on consensus profiles")
        rows.extend(family_rows(tables["consensus"]))
    if "well" in tables:
        rows.extend(well_rows(tables["well"], seed, max_silhouette))
    else:
        rows.append(row("nsb_accuracy", "well", "all", "observed", note="no well-level profiles"))
    write_table(pd.DataFrame(rows, columns=TABLE_COLUMNS), out_tsv)
    if f1_out is not None:
        write_table(pd.DataFrame(f1_rows, columns=F1_COLUMNS), f1_out)
    if ap_out is not None:
        Path(ap_out).parent.mkdir(parents=True, exist_ok=True)
        ap = pd.concat(ap_tables, ignore_index=True) if ap_tables else pd.DataFrame()
        ap.to_parquet(ap_out, index=False)


def write_table(table: pd.DataFrame, out_tsv: str | Path) -> None:
    """Write the long-format table as TSV (NaN as empty cells), creating the folder."""
    Path(out_tsv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_tsv, sep="\t", index=False, na_rep="NA", float_format="%.6g")
