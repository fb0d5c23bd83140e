"""Retrieval mAP: per-query AP by blocked cosine ranking, copairs' null, p-values, F1 at k.

A *task* says which profiles are positives of a query (share every ``sameby`` column, differ
in every ``pos_diffby`` column) and which are negatives (differ in every ``sameby`` column).
``multilabel_col`` (one of ``sameby``) holds '|'-separated labels (targets): a query is
scored once per label it carries; positives carry that label, negatives share no label with
the query. Rows with a missing ``sameby`` value are neither queries nor candidates.

This reimplements copairs 0.5.5 (``copairs.map.average_precision``, its multilabel variant
and ``mean_average_precision``) without listing every pair, so that 25,000 profiles take
seconds: cosine similarities are matrix products of unit rows for a block of queries at a
time, computed in float64 and rounded to float32 as copairs does. A positive's rank is the
number of positives up to it plus the number of negatives with a strictly higher similarity
(copairs ranks ties positives first), so AP equals copairs' AP, ties included. The null has
copairs' distribution (the positives' ranks are a random subset of the candidates' ranks)
with its own random draws, one null per (positives, total) configuration, so p-values agree
with copairs' within sampling error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import false_discovery_control

from paintssl.tables import codes, split_labels

SIGNIFICANCE = 0.05
BLOCK = 512
NULL_CHUNK = 512
CLT_MIN = 100
F1_KS: tuple[int, ...] = tuple(range(1, 50, 2))


@dataclass(frozen=True)
class MapSummary:
    """One mAP number with its significance.

    ``value`` is the mean over groups of the per-group mAP; ``p_value`` tests ``value``
    against a null where every query draws independently from copairs' null for its
    configuration (same weights as ``value``); ``fraction_retrieved`` is the share of groups
    with BH-corrected p < 0.05 (copairs' per-group test).
    """

    value: float
    n_queries: int
    n_groups: int
    p_value: float
    fraction_retrieved: float


@dataclass(frozen=True)
class Labeling:
    """Who is a positive and who a negative of whom, for one task on ``n`` profiles.

    ``items`` (profile x item) marks what a query is scored for: its combination of
    ``sameby`` values, one item per label of the multilabel column. Negatives are valid
    profiles that differ in every ``neg_codes`` column and share no ``labels`` column.
    """

    valid: np.ndarray
    items: sparse.csr_matrix
    members: sparse.csr_matrix
    item_names: np.ndarray
    neg_codes: tuple[np.ndarray, ...]
    labels: sparse.csr_matrix | None
    pos_codes: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Ranking:
    """Per scored (query, item): positives, candidates, AP and every positive's rank.

    ``ranks`` holds the 1-based rank of each positive among the query's candidates, pair
    after pair, ``n_pos[i]`` values for pair ``i``.
    """

    query: np.ndarray
    item: np.ndarray
    n_pos: np.ndarray
    n_total: np.ndarray
    average_precision: np.ndarray
    ranks: np.ndarray


def indicator(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """Sparse 0/1 matrix with ones at (rows, cols)."""
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)


def labeling(
    meta: pd.DataFrame,
    sameby: Sequence[str],
    pos_diffby: Sequence[str] = (),
    multilabel_col: str | None = None,
) -> Labeling:
    """Return the positives and negatives of a task (module docstring) on the rows of ``meta``."""
    sameby = list(sameby)
    if multilabel_col is not None and multilabel_col not in sameby:
        raise ValueError(f"multilabel_col {multilabel_col!r} must be one of sameby {sameby}")
    meta = meta.reset_index(drop=True)
    n = len(meta)
    valid = meta[sameby].notna().all(axis=1).to_numpy().copy()
    single = [c for c in sameby if c != multilabel_col]
    combined = meta.groupby(single, dropna=False, sort=False).ngroup().to_numpy() if single else 0
    if multilabel_col is None:
        per_row = pd.Series([[""]] * n)
    else:
        per_row = split_labels(meta[multilabel_col])
        valid &= (per_row.map(len) > 0).to_numpy()
    per_row = per_row.where(valid, pd.Series([[]] * n))
    rows = np.repeat(np.arange(n), per_row.map(len).to_numpy())
    values = np.array([x for row in per_row for x in row], dtype=object)
    keys = pd.MultiIndex.from_arrays([np.broadcast_to(combined, n)[rows], values])
    item_codes, item_keys = keys.factorize()
    items = indicator(rows, item_codes, (n, len(item_keys)))
    labels = None
    if multilabel_col is not None:
        label_codes, label_names = pd.factorize(values)
        labels = indicator(rows, label_codes, (n, max(len(label_names), 1)))
    return Labeling(
        valid=valid,
        items=items,
        members=items.T.tocsr(),
        item_names=np.asarray(item_keys.get_level_values(1), dtype=object),
        neg_codes=tuple(codes(meta[c]) for c in single),
        labels=labels,
        pos_codes=tuple(codes(meta[c]) for c in pos_diffby),
    )


def similarity_keys(feats: np.ndarray, block: int = BLOCK) -> Iterator[tuple[slice, np.ndarray]]:
    """Blocks of ``1 - cosine similarity`` as copairs ranks them (float64 rounded to float32)."""
    feats = np.asarray(feats, dtype=np.float64)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    for start in range(0, len(unit), block):
        rows = slice(start, min(start + block, len(unit)))
        yield rows, np.float32(1) - (unit[rows] @ unit.T).astype(np.float32)


def negative_mask(lab: Labeling, rows: slice) -> np.ndarray:
    """Return (queries x profiles) True where the profile is a negative of the query."""
    negative = np.repeat(lab.valid[None, :], rows.stop - rows.start, axis=0)
    for col in lab.neg_codes:
        negative &= col[rows, None] != col[None, :]
    if lab.labels is not None:
        negative &= (lab.labels[rows] @ lab.labels.T).toarray() == 0
    return negative


def positive_pairs(lab: Labeling, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scored (query, item) pairs of a block and their positives.

    Returns the query and item of each pair, and for every positive its pair index and
    profile, grouped by pair.
    """
    block_items = lab.items[rows]
    query = np.repeat(np.arange(rows.start, rows.stop), np.diff(block_items.indptr))
    item = block_items.indices
    starts, stops = lab.members.indptr[item], lab.members.indptr[item + 1]
    sizes = stops - starts
    pair = np.repeat(np.arange(len(item)), sizes)
    offset = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    member = lab.members.indices[np.repeat(starts, sizes) + offset]
    keep = member != query[pair]
    for col in lab.pos_codes:
        keep &= col[member] != col[query[pair]]
    return query, item, np.stack([pair[keep], member[keep]])


def rank_block(key: np.ndarray, rows: slice, lab: Labeling) -> Ranking:
    """Rank the positives of the block's queries (``key``: 1 - similarity, queries x all)."""
    negative = negative_mask(lab, rows)
    n_neg = np.count_nonzero(negative, axis=1)
    sorted_negatives = np.sort(np.where(negative, key, np.inf), axis=1)
    query, item, (pair, member) = positive_pairs(lab, rows)
    local = query - rows.start
    pos_key = key[local[pair], member]
    order = np.lexsort((pos_key, pair))
    pair, pos_key = pair[order], pos_key[order]
    n_pos = np.bincount(pair, minlength=len(query))
    first = np.cumsum(n_pos) - n_pos
    within = np.arange(len(pair)) - first[pair] + 1
    negatives_before = np.empty(len(pair), dtype=np.int64)
    bounds = np.searchsorted(local[pair], np.arange(rows.stop - rows.start + 1))
    for row, (lo, hi) in enumerate(pairwise(bounds)):
        if hi > lo:
            negatives_before[lo:hi] = np.searchsorted(sorted_negatives[row], pos_key[lo:hi])
    ranks = within + negatives_before
    precision_sum = np.bincount(pair, weights=within / ranks, minlength=len(query))
    scored = n_pos > 0
    with np.errstate(invalid="ignore"):
        ap = precision_sum / n_pos
    return Ranking(
        query=query[scored],
        item=item[scored],
        n_pos=n_pos[scored],
        n_total=n_pos[scored] + n_neg[local[scored]],
        average_precision=ap[scored],
        ranks=ranks,
    )


def rank_positives(feats: np.ndarray, labelings: Sequence[Labeling]) -> list[Ranking]:
    """Rank every query's positives for several labelings of the same profiles.

    The similarity matrix is computed once, block by block, for all labelings (e.g. the
    observed and the shuffled labels). A labeling without any positive or any negative
    gives an empty ranking, as copairs raises ``UnpairedException`` then.
    """
    parts: list[list[Ranking]] = [[] for _ in labelings]
    has_negative = [False] * len(labelings)
    for rows, key in similarity_keys(feats):
        for i, lab in enumerate(labelings):
            part = rank_block(key, rows, lab)
            parts[i].append(part)
            has_negative[i] |= bool((part.n_total > part.n_pos).any())
    return [concat_rankings(p if neg else []) for p, neg in zip(parts, has_negative, strict=True)]


def concat_rankings(parts: Sequence[Ranking]) -> Ranking:
    """One ranking from consecutive blocks (an empty ranking from none)."""
    fields = Ranking.__dataclass_fields__
    if not parts:
        return Ranking(**{f: np.empty(0, dtype=np.int64) for f in fields})
    return Ranking(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def ap_table(
    meta: pd.DataFrame, lab: Labeling, ranking: Ranking, multilabel_col: str | None
) -> pd.DataFrame:
    """Copairs' AP table: ``meta`` rows of the scored queries plus AP and pair counts.

    With ``multilabel_col`` there is one row per (query, label), the column holding the label.
    """
    table = meta.reset_index(drop=True).iloc[ranking.query].reset_index(drop=True)
    if multilabel_col is not None:
        table[multilabel_col] = lab.item_names[ranking.item]
    return table.assign(
        average_precision=ranking.average_precision,
        n_pos_pairs=ranking.n_pos,
        n_total_pairs=ranking.n_total,
    )


def average_precision(
    meta: pd.DataFrame,
    feats: np.ndarray,
    sameby: Sequence[str],
    pos_diffby: Sequence[str] = (),
    multilabel_col: str | None = None,
) -> pd.DataFrame:
    """Per-query AP (cosine) for retrieving profiles that share ``sameby`` (see module).

    Returns copairs' AP table (``meta`` columns plus ``average_precision, n_pos_pairs,
    n_total_pairs``) restricted to queries with at least one positive.
    """
    lab = labeling(meta, sameby, pos_diffby, multilabel_col)
    (ranking,) = rank_positives(feats, [lab])
    return ap_table(meta, lab, ranking, multilabel_col)


def f1_at_k(ranking: Ranking, ks: Sequence[int] = F1_KS) -> np.ndarray:
    """Mean over scored pairs of the F1 of retrieving the positives among the k nearest.

    F1 = 2 TP / (k + positives); candidates that do not exist count as misses.
    """
    ks = np.asarray(ks)
    if not len(ranking.n_pos):
        return np.full(len(ks), np.nan)
    pair = np.repeat(np.arange(len(ranking.n_pos)), ranking.n_pos)
    tp = np.zeros((len(ranking.n_pos), len(ks)))
    np.add.at(tp, pair, ranking.ranks[:, None] <= ks[None, :])
    return (2 * tp / (ks[None, :] + ranking.n_pos[:, None])).mean(axis=0)


def random_subsets(n_total: int, n_pos: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` sorted uniform random ``n_pos``-subsets of ``range(n_total)``, one per row."""
    if n_pos * n_pos <= n_total:  # a row repeats a value with probability < 1/2: redraw it
        out = np.sort(rng.integers(n_total, size=(size, n_pos)), axis=1)
        while (redo := np.flatnonzero((np.diff(out, axis=1) == 0).any(axis=1))).size:
            out[redo] = np.sort(rng.integers(n_total, size=(len(redo), n_pos)), axis=1)
        return out
    chunk = max(1, 2**22 // n_total)
    parts = [
        np.sort(rng.random((min(chunk, size - s), n_total)).argsort(axis=1)[:, :n_pos], axis=1)
        for s in range(0, size, chunk)
    ]
    return np.concatenate(parts)


def null_average_precision(n_pos: int, n_total: int, null_size: int, seed: int) -> np.ndarray:
    """Copairs' null: APs of ``n_pos`` positives ranked at random among ``n_total``."""
    rng = np.random.default_rng([seed, n_pos, n_total])
    positions = random_subsets(n_total, n_pos, null_size, rng)
    precision = np.arange(1, n_pos + 1) / (positions + 1)
    return (precision.sum(axis=1) / n_pos).astype(np.float32)


def null_table(ap: pd.DataFrame, null_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One null per distinct (n_pos_pairs, n_total_pairs) and each query's null row."""
    confs = ap[["n_pos_pairs", "n_total_pairs"]].to_numpy(dtype=np.int64)
    unique, inverse = np.unique(confs, axis=0, return_inverse=True)
    null = np.stack([null_average_precision(k, m, null_size, seed) for k, m in unique])
    return null, inverse.ravel()


def group_p_values(
    value: np.ndarray, group: np.ndarray, inverse: np.ndarray, null: np.ndarray
) -> np.ndarray:
    """Copairs' per-group p-value: (#(mean of the members' null rows > mAP) + 1) / (N + 1).

    As in copairs, members with the same configuration share one null row.
    """
    n_groups, null_size = len(value), null.shape[1]
    counts = indicator(group, inverse, (n_groups, len(null))).astype(np.float64)
    counts = sparse.diags(1 / counts.sum(axis=1).A1) @ counts
    p = np.empty(n_groups)
    for start in range(0, n_groups, NULL_CHUNK):
        part = slice(start, start + NULL_CHUNK)
        group_null = counts[part] @ null
        p[part] = ((group_null > value[part, None]).sum(axis=1) + 1) / (null_size + 1)
    return p


def summary_p_value(
    value: float, weights: np.ndarray, inverse: np.ndarray, null: np.ndarray, seed: int
) -> float:
    """p-value of a weighted mean of APs; each query draws independently from its null row.

    (copairs reuses one draw per configuration within a group, which would make the null
    of a many-query mean far too wide.) Queries whose (configuration, weight) is shared by
    at least ``CLT_MIN`` queries enter through the normal limit of their sum (same mean and
    variance), which spares ``n_queries x null_size`` draws; the others are drawn exactly.
    """
    rng = np.random.default_rng(seed)
    null_size = null.shape[1]
    classes = pd.MultiIndex.from_arrays([inverse, weights]).factorize()[0]
    normal = np.bincount(classes)[classes] >= CLT_MIN
    mean, var = null.mean(axis=1, dtype=np.float64), null.var(axis=1, dtype=np.float64)
    null_of_value = (weights[normal] @ mean[inverse[normal]]) + np.sqrt(
        weights[normal] ** 2 @ var[inverse[normal]]
    ) * rng.standard_normal(null_size)
    exact = np.flatnonzero(~normal)
    for start in range(0, len(exact), NULL_CHUNK):
        part = exact[start : start + NULL_CHUNK]
        draws = rng.integers(null_size, size=(len(part), null_size))
        null_of_value += weights[part] @ null[inverse[part, None], draws]
    return float(((null_of_value > value).sum() + 1) / (null_size + 1))


def summarize_map(
    ap: pd.DataFrame, group: str, null_size: int, seed: int
) -> tuple[MapSummary, pd.DataFrame]:
    """Return the per-group mAP table and its :class:`MapSummary`.

    The table has ``mean_average_precision, p_value, corrected_p_value, below_p,
    below_corrected_p``; the summary is NaN when there are no queries.
    """
    if ap.empty:
        return MapSummary(np.nan, 0, 0, np.nan, np.nan), pd.DataFrame()
    null, inverse = null_table(ap, null_size, seed)
    group_code, names = pd.factorize(ap[group], sort=True)
    sizes = np.bincount(group_code)
    value = np.bincount(group_code, weights=ap["average_precision"].to_numpy()) / sizes
    p = group_p_values(value, group_code, inverse, null)
    corrected = false_discovery_control(p, method="bh")
    per_group = pd.DataFrame(
        {
            group: names,
            "mean_average_precision": value,
            "p_value": p,
            "corrected_p_value": corrected,
            "below_p": p < SIGNIFICANCE,
            "below_corrected_p": corrected < SIGNIFICANCE,
        }
    )
    weights = 1.0 / (sizes[group_code] * len(sizes))
    summary = MapSummary(
        value=float(value.mean()),
        n_queries=len(ap),
        n_groups=len(sizes),
        p_value=summary_p_value(float(value.mean()), weights, inverse, null, seed),
        fraction_retrieved=float(per_group["below_corrected_p"].mean()),
    )
    return summary, per_group
