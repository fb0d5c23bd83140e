"""Retrieval mAP with copairs: per-query AP, per-group mAP with p-values, and a summary.

A *task* says which profiles are positives of a query (share ``label``, differ in
``pos_diffby``) and which are negatives (do not share ``label``). ``label`` may hold
'|'-separated multi-labels (targets), split before copairs' multilabel matcher.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from copairs import compute
from copairs import map as copairs_map
from copairs.matching import UnpairedException

log = logging.getLogger(__name__)

MULTILABEL_SEP = "|"
SIGNIFICANCE = 0.05
NULL_CHUNK = 512


@dataclass(frozen=True)
class MapSummary:
    """One mAP number with its significance.

    ``value`` is the mean over groups of the per-group mAP; ``p_value`` tests ``value``
    against copairs' null for the same queries (same weights); ``fraction_retrieved`` is
    the share of groups with BH-corrected p < 0.05.
    """

    value: float
    n_queries: int
    n_groups: int
    p_value: float
    fraction_retrieved: float


def split_labels(labels: pd.Series) -> pd.Series:
    """Split '|'-separated labels into sorted lists of unique, stripped, non-empty items."""
    return labels.map(
        lambda s: sorted({x.strip() for x in str(s).split(MULTILABEL_SEP) if x.strip()})
    )


def average_precision(
    meta: pd.DataFrame,
    feats: np.ndarray,
    sameby: Sequence[str],
    pos_diffby: Sequence[str] = (),
    multilabel_col: str | None = None,
) -> pd.DataFrame:
    """Per-query AP (copairs, cosine) for retrieving profiles that share ``sameby``.

    Positives share every ``sameby`` column and differ in every ``pos_diffby`` column;
    negatives differ in every ``sameby`` column. ``multilabel_col`` (one of ``sameby``)
    holds '|'-separated labels; two profiles share it when they share any label. Rows
    with a missing ``sameby`` value are dropped. Returns copairs' AP table (``meta``
    columns plus ``average_precision, n_pos_pairs, n_total_pairs``) restricted to queries
    with at least one positive; empty when there is no positive or no negative pair.
    """
    sameby = list(sameby)
    keep = meta[sameby].notna().all(axis=1).to_numpy().copy()
    if multilabel_col is not None:
        labels = split_labels(meta[multilabel_col])
        keep &= (labels.map(len) > 0).to_numpy()
        meta = meta.assign(**{multilabel_col: labels})
    meta = meta.loc[keep].reset_index(drop=True)
    feats = np.asarray(feats, dtype=np.float64)[keep]
    pairs = {"pos_sameby": sameby, "pos_diffby": list(pos_diffby), "neg_sameby": []}
    try:
        if multilabel_col is None:
            ap = copairs_map.average_precision(
                meta, feats, **pairs, neg_diffby=sameby, progress_bar=False
            )
        else:
            ap = copairs_map.multilabel.average_precision(
                meta,
                feats,
                **pairs,
                neg_diffby=sameby,
                multilabel_col=multilabel_col,
                progress_bar=False,
            )
    except UnpairedException as err:
        log.info("no pairs for %s: %s", sameby, err)
        return pd.DataFrame(columns=[*meta.columns, "average_precision"])
    ap = ap[(ap["n_pos_pairs"] > 0) & ap["average_precision"].notna()]
    return ap.reset_index(drop=True)


def mean_average_precision(
    ap: pd.DataFrame,
    group: str,
    null_size: int,
    seed: int,
    cache_dir: str,
) -> pd.DataFrame:
    """Per-group mAP with copairs p-values and BH-corrected p-values (threshold 0.05)."""
    table = copairs_map.mean_average_precision(
        ap,
        [group],
        null_size=null_size,
        threshold=SIGNIFICANCE,
        seed=seed,
        progress_bar=False,
        cache_dir=cache_dir,
    )
    return table.drop(columns="indices")


def summary_p_value(
    ap: pd.DataFrame, group: str, value: float, null_size: int, seed: int, cache_dir: str
) -> float:
    """p-value of the mean of per-group mAPs against a null of independent random APs.

    Each query weighs 1 / (n_groups x its group size), as in the mean of group means. Each
    null draw gives every query an independent draw from copairs' null for its
    configuration (copairs itself reuses one draw per configuration within a group, which
    would make the null of a many-query mean far too wide).
    """
    sizes = ap[group].map(ap[group].value_counts()).to_numpy(dtype=np.float64)
    weights = 1.0 / (sizes * ap[group].nunique())
    confs = ap[["n_pos_pairs", "n_total_pairs"]].to_numpy()
    unique_confs, inverse = np.unique(confs, axis=0, return_inverse=True)
    null = compute.get_null_dists(
        unique_confs, null_size, seed=seed, cache_dir=cache_dir, progress_bar=False
    )
    rng = np.random.default_rng(seed)
    null_of_value = np.zeros(null_size)
    for start in range(0, len(ap), NULL_CHUNK):
        rows = slice(start, start + NULL_CHUNK)
        draws = rng.integers(null_size, size=(len(weights[rows]), null_size))
        null_of_value += weights[rows] @ null[inverse.ravel()[rows, None], draws]
    return float(((null_of_value > value).sum() + 1) / (null_size + 1))


def summarize_map(
    ap: pd.DataFrame, group: str, null_size: int, seed: int
) -> tuple[MapSummary, pd.DataFrame]:
    """Per-group mAP table and its :class:`MapSummary` (NaNs when there are no queries)."""
    if ap.empty:
        return MapSummary(np.nan, 0, 0, np.nan, np.nan), pd.DataFrame()
    with tempfile.TemporaryDirectory(prefix="copairs-null-") as cache_dir:
        per_group = mean_average_precision(ap, group, null_size, seed, cache_dir)
        value = float(per_group["mean_average_precision"].mean())
        p_value = summary_p_value(ap, group, value, null_size, seed, cache_dir)
    summary = MapSummary(
        value=value,
        n_queries=len(ap),
        n_groups=len(per_group),
        p_value=p_value,
        fraction_retrieved=float(per_group["below_corrected_p"].mean()),
    )
    return summary, per_group
