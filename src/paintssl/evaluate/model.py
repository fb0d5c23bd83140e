"""Evaluate one model's profiles: one long-format TSV with every metric beside its chance level.

``results/eval/{model}.tsv`` has one row per metric x profile level x setting x variant:

==================  =======================================================================
column              meaning
==================  =======================================================================
metric              e.g. ``perturbation_map``, ``target_map``, ``nsb_accuracy``,
                    ``transfer_accuracy`` (see below)
level               profile level the metric was computed on (well, batch, source, consensus)
setting             cell line (``Metadata_cell_line``); positives never pair across settings;
                    transferability: ``SOURCE->TARGET`` (train -> test cell line)
variant             ``observed``; ``random_features`` (Gaussian noise of the same shape) and
                    ``shuffled_labels`` (metadata permuted against features within a setting)
                    are the chance levels; batch-effect metrics add ``gaussian_clusters`` and
                    ``random_labels`` (perfect separation / perfect mixing of batches)
value               the metric (mAP: mean over groups of the per-group mAP)
n_queries           profiles that served as queries (or were scored)
n_groups            groups averaged (perturbations, targets, families, batches), else NA
p_value             mAP: ``value`` against random APs (copairs' null, ``null_size`` draws;
                    ``evaluate.map.summary_p_value``)
fraction_retrieved  mAP: share of groups with BH-corrected p < 0.05 (copairs' per-group test)
note                why a value is NaN, or what it was computed on
==================  =======================================================================

When the profile chain is given, a row ``metric=profile_chain, level=well, setting=all,
variant=observed`` records it in ``note`` (the step names, comma-separated; ``none`` for an
empty chain) with no value. A row ``metric=eval_plates`` (same keys) gives the plates the
well profiles came from: their number in ``value``, their names in ``note``.

Controls (``Metadata_pert_type`` negcon/poscon) are left out of every retrieval metric, so
negative controls are never queries (the paper's protocol). The optional F1 table scores
the same (query, label) pairs as the mAP tasks: for targets, one pair per target of a query.

Percent replicating (``percent_replicating``, batch level) is cytominer-eval's replicate
reproducibility: the share of replicate pairs (same perturbation, other profiles of the
cell line) more correlated than the 95th percentile of non-replicate pairs; beside it,
``median_replicate_correlation`` is the mean over perturbations of their median replicate
correlation (both as cytominer-eval computes them).

Cell-line transferability (``transfer_accuracy``, ``transfer_macro_f1``; level well) is the
CVDD-CVPR25 challenge's protocol (``evaluate.transfer``): kNN compound classification
(cosine, ``eval.transfer_k`` neighbours) in cross-validation with plates split between
``eval.transfer_folds`` folds, for every setting ``SOURCE->TARGET`` of the cell lines
(``U2OS->A549``: trained on U2OS plates, tested on A549 plates of the held-out fold; one
cell line: its own setting only). DMSO (negcon) wells are neither queries nor neighbours;
the folds' predictions are pooled, then scored; ``n_queries`` is the test wells, ``n_groups``
their compounds, ``note`` the folds and k (fewer plates than folds: as many folds as plates;
under 2: NaN) and the test wells whose compound was absent from training (errors). Its
``shuffled_labels`` permute the compounds among each plate's wells (plates keep theirs).

Speed: AP is computed by ``evaluate.map`` (equal to copairs' AP, much faster); the well-level
metrics share one neighbour search per feature matrix (``evaluate.knn``); silhouette and
percent replicating, which are quadratic, use at most ``max_silhouette`` wells and
``max_replicating`` profiles. ``bench/bench_eval.py`` times every step on 100,000 planted
wells.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.evaluate.family import cluster_families
from paintssl.evaluate.map import (
    F1_KS,
    Ranking,
    ap_table,
    f1_at_k,
    labeling,
    rank_positives,
    summarize_map,
)
from paintssl.evaluate.replicating import median_replicate_correlation, replicate_reproducibility
from paintssl.evaluate.table import (
    F1_COLUMNS,
    TABLE_COLUMNS,
    VARIANTS,
    by_setting,
    chance_inputs,
    row,
    treatments,
    write_table,
)
from paintssl.evaluate.transfer import METRICS as TRANSFER_METRICS
from paintssl.evaluate.transfer import transfer_rows
from paintssl.evaluate.wells import well_rows
from paintssl.tables import (
    BATCH,
    CELL_LINE,
    GENE,
    GENE_FAMILY,
    PERT_TYPE,
    PERTURBATION,
    PLATE,
    PROFILE_LEVELS,
    SOURCE,
    TARGET,
    feature_columns,
    split_features,
    write_parquet,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """The ``eval`` section of the config.

    Attributes
    ----------
    null_size : draws of copairs' random-AP null for mAP p-values.
    max_silhouette : silhouette on a random subset of at most this many wells (None: all).
    max_replicating : percent replicating on at most this many profiles (None: all).
    transfer_k : neighbours voting in the transferability kNN.
    transfer_folds : plate folds of the transferability cross-validation.
    """

    null_size: int = 10_000
    max_silhouette: int | None = 20_000
    max_replicating: int | None = 5_000
    transfer_k: int = 1
    transfer_folds: int = 5


@dataclass(frozen=True)
class MapTask:
    """A retrieval task: positives share ``sameby`` and differ in ``pos_diffby``."""

    level: str
    sameby: str
    pos_diffby: tuple[str, ...] = ()
    multilabel: bool = False


MAP_TASKS: dict[str, MapTask] = {
    "perturbation_map": MapTask("batch", PERTURBATION, (BATCH,)),
    "cross_source_map": MapTask("source", PERTURBATION, (SOURCE,)),
    "target_map": MapTask("consensus", TARGET, multilabel=True),
    "gene_family_map": MapTask("consensus", GENE_FAMILY, (GENE,)),
}


def read_profiles(path: str | Path) -> pd.DataFrame:
    """Read a profile table and check the columns every metric needs."""
    df = pd.read_parquet(path)
    missing = {CELL_LINE, PERTURBATION, PERT_TYPE} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing metadata columns {sorted(missing)}")
    if not feature_columns(df):
        raise ValueError(f"{path}: no feature columns (all columns start with 'Metadata_')")
    return df


def map_task_rows(
    metric: str, task: MapTask, profiles: pd.DataFrame, null_size: int, seed: int
) -> tuple[list[dict], list[dict], pd.DataFrame]:
    """MAP rows and F1-at-k rows (all settings and variants), observed per-query AP.

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
        meta, feats = split_features(part)
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
    keys = [c for c in (PERTURBATION, SOURCE, BATCH) if c in ap.columns]
    group = ap[task.sameby].astype(str)
    cols = ["metric", "level", "setting", *keys, "average_precision", "n_pos_pairs"]
    return ap[cols].assign(group=group, n_total_pairs=ap["n_total_pairs"])


def family_rows(consensus: pd.DataFrame) -> list[dict]:
    """Gene-family AMI of complete-linkage clustering, per cell line (observed only)."""
    rows = []
    for setting, part in by_setting(treatments(consensus)):
        meta, feats = split_features(part)
        result = cluster_families(meta, feats)
        values = {"value": result.ami, "n_queries": len(result.families), "note": result.note}
        values["n_groups"] = result.families.nunique()
        rows.append(row("gene_family_ami", "consensus", setting, "observed", **values))
    return rows


def replicating_rows(batch: pd.DataFrame, seed: int, max_profiles: int | None) -> list[dict]:
    """Percent replicating of treatments per cell line, with its chance levels.

    Replicates share the perturbation; profiles beyond ``max_profiles`` are left out at
    random (the metric is quadratic in the number of profiles).
    """
    rows = []
    for setting, part in by_setting(treatments(batch)):
        if max_profiles is not None and len(part) > max_profiles:
            keep = np.random.default_rng(seed).choice(len(part), max_profiles, replace=False)
            part = part.iloc[np.sort(keep)].reset_index(drop=True)
        meta, feats = split_features(part)
        noise, shuffled = chance_inputs(meta, feats, seed)
        runs = {"observed": (meta, feats), "random_features": (meta, noise)}
        runs["shuffled_labels"] = (shuffled, feats)
        for variant, (var_meta, var_feats) in runs.items():
            values = {"n_queries": len(var_meta), "n_groups": var_meta[PERTURBATION].nunique()}
            medians = median_replicate_correlation(var_meta, var_feats, [PERTURBATION])
            median = {"value": medians.mean(), "note": "" if len(medians) else "no replicates"}
            rows.append(
                row("median_replicate_correlation", "batch", setting, variant, **values, **median)
            )
            try:
                values["value"] = replicate_reproducibility(var_meta, var_feats, [PERTURBATION])
            except ValueError as err:
                values["note"] = str(err)
            rows.append(row("percent_replicating", "batch", setting, variant, **values))
    return rows


def evaluate_model(
    profiles: Mapping[str, str | Path],
    out_tsv: str | Path,
    cfg: EvalConfig,
    seed: int = 0,
    ap_out: str | Path | None = None,
    f1_out: str | Path | None = None,
    profile_chain: Sequence[str] | None = None,
) -> None:
    """Compute every metric for one model and write the long-format table (module docstring).

    Parameters
    ----------
    profiles
        ``{level: path}`` for the levels well, batch, source and consensus; a metric whose
        level is absent gets a NaN row saying so.
    out_tsv
        Output TSV (``results/eval/{model}.tsv``).
    cfg
        The evaluation settings.
    seed
        Seed of the null, random features, label shuffles and subsets.
    ap_out
        Optional Parquet of observed per-query AP (metric, setting, perturbation keys,
        ``group`` = the label retrieved), used to pair models in Wilcoxon tests.
    f1_out
        Optional TSV of F1 at k = 1..49 (step 2) for every mAP task, setting and variant.
    profile_chain
        The profile steps the well profiles went through, recorded in a ``profile_chain``
        row (none: no such row).
    """
    unknown = set(profiles) - set(PROFILE_LEVELS)
    if unknown:
        raise ValueError(f"unknown profile levels {sorted(unknown)}; use {list(PROFILE_LEVELS)}")
    tables = {level: read_profiles(path) for level, path in profiles.items()}
    rows, f1_rows, ap_tables = [], [], []
    for metric, task in MAP_TASKS.items():
        if task.level not in tables:
            note = f"no {task.level}-level profiles given"
            rows.append(row(metric, task.level, "all", "observed", note=note))
            continue
        task_rows, task_f1, ap = map_task_rows(
            metric, task, tables[task.level], cfg.null_size, seed
        )
        rows.extend(task_rows)
        f1_rows.extend(task_f1)
        if len(ap):
            ap_tables.append(per_query_ap_table(ap, task))
    if "batch" in tables:
        log.info("percent replicating on batch profiles")
        rows.extend(replicating_rows(tables["batch"], seed, cfg.max_replicating))
    if "consensus" in tables:
        log.info("gene-family clustering on consensus profiles")
        rows.extend(family_rows(tables["consensus"]))
    if "well" in tables:
        rows.extend(well_rows(tables["well"], seed, cfg.max_silhouette))
        log.info("cell-line transferability (kNN) on well profiles")
        rows.extend(transfer_rows(tables["well"], cfg.transfer_k, cfg.transfer_folds, seed))
    else:
        for metric in ("nsb_accuracy", *TRANSFER_METRICS):
            rows.append(row(metric, "well", "all", "observed", note="no well-level profiles"))
    if "well" in tables:
        plates = sorted(tables["well"][PLATE].astype(str).unique())
        rows.append(row("eval_plates", "well", "all", "observed", value=len(plates),
                        note=",".join(plates)))  # fmt: skip
    if profile_chain is not None:
        chain = ",".join(profile_chain) or "none"
        rows.append(row("profile_chain", "well", "all", "observed", note=chain))
    write_table(pd.DataFrame(rows, columns=TABLE_COLUMNS), out_tsv)
    if f1_out is not None:
        write_table(pd.DataFrame(f1_rows, columns=F1_COLUMNS), f1_out)
    if ap_out is not None:
        ap = pd.concat(ap_tables, ignore_index=True) if ap_tables else pd.DataFrame()
        write_parquet(ap, ap_out)
