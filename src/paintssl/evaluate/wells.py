"""Well-level metrics: nearest-neighbour accuracies (NSB, NSBP) and batch/source effects.

One neighbour search per feature matrix (observed, random features) serves both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from paintssl.evaluate.batch import LISI_KS, effect_metrics, gaussian_clusters
from paintssl.evaluate.knn import Neighbours, nearest_match_accuracy, neighbour_search
from paintssl.evaluate.table import TREATMENT, by_setting, row
from paintssl.tables import (
    BATCH,
    GENE_FAMILY,
    PERT_TYPE,
    PERTURBATION,
    SOURCE,
    TARGET,
    split_features,
)

log = logging.getLogger(__name__)

EFFECT_LABELS = {"batch": BATCH, "source": SOURCE}
NEIGHBOURS = max(LISI_KS)  # one kNN search per feature matrix serves LISI, connectivity, NSB
Exclusion = str | tuple[str, ...]
"""A candidate is skipped when it has the query's value in this column (in all, for a tuple)."""
NN_TASKS: dict[str, tuple[str, list[Exclusion], bool]] = {  # label, exclusions, multilabel
    "nsb_accuracy": (PERTURBATION, [BATCH], False),
    # Kim et al.'s code (nearest_neighbor_classifier_NSBW): only neighbours with the same
    # batch *and* the same perturbation are skipped; another perturbation of the batch counts.
    "nsb_accuracy_authors": (PERTURBATION, [(BATCH, PERTURBATION)], False),
    "nsbp_target_accuracy": (TARGET, [BATCH, PERTURBATION], True),
    "nsbp_gene_family_accuracy": (GENE_FAMILY, [BATCH, PERTURBATION], False),
}


def well_rows(wells: pd.DataFrame, seed: int, max_silhouette: int | None) -> list[dict]:
    """NSB/NSBP accuracies and batch/source effects per cell line.

    One neighbour search per feature matrix (observed, random features) serves both.
    """
    rows = []
    for setting, part in by_setting(wells):
        meta, feats = split_features(part)
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

    ``nsb_accuracy`` skips every neighbour of the query's batch (the paper's text);
    ``nsb_accuracy_authors`` skips only those of the same batch and perturbation (the
    authors' code), so that our numbers can be set beside the paper's.

    Queries and candidates are treatments with the label; shuffled labels permute the
    treatments' metadata against their features.
    """
    is_trt = (meta[PERT_TYPE] == TREATMENT).to_numpy()
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
            needed = {label, *(c for e in exclude for c in ((e,) if isinstance(e, str) else e))}
            missing = sorted(needed - set(var_meta.columns))
            if missing:
                note = f"no column(s) {missing}"
                rows.append(row(metric, "well", setting, variant, n_queries=0, note=note))
                continue
            pool = is_trt & var_meta[label].notna().to_numpy()
            excluded = [exclusion_key(var_meta, e) for e in exclude]
            accuracy, n_queries = nearest_match_accuracy(
                graph, var_meta[label], excluded, pool, multilabel
            )
            note = "" if n_queries else "no well has a candidate neighbour"
            values = {"value": accuracy, "n_queries": n_queries, "note": note}
            rows.append(row(metric, "well", setting, variant, **values))
    return rows


def exclusion_key(meta: pd.DataFrame, exclusion: Exclusion) -> pd.Series:
    """Return the column of ``exclusion``, or its columns joined into one key per row."""
    if isinstance(exclusion, str):
        return meta[exclusion]
    return meta[list(exclusion)].astype("string").fillna("<NA>").agg("\x1f".join, axis=1)


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
