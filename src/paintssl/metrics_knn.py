"""Cosine nearest neighbours in blocks: NSB/NSBP accuracy, F1 at k and the kNN graph."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from paintssl.metrics_map import split_labels

BLOCK = 512
F1_KS: tuple[int, ...] = tuple(range(1, 50, 2))


def unit_rows(feats: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32), so a dot product is the cosine similarity."""
    feats = np.asarray(feats, dtype=np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.where(norms > 0, norms, 1.0)


def similarity_blocks(unit: np.ndarray, block: int = BLOCK) -> Iterator[tuple[slice, np.ndarray]]:
    """Query blocks of the cosine similarity matrix, self-similarity set to -inf."""
    for start in range(0, len(unit), block):
        rows = slice(start, min(start + block, len(unit)))
        sims = unit[rows] @ unit.T
        sims[np.arange(sims.shape[0]), np.arange(rows.start, rows.stop)] = -np.inf
        yield rows, sims


def codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a label column (missing values get their own code)."""
    return pd.factorize(values.astype("string").fillna("<NA>"))[0]


def label_matrix(labels: pd.Series, multilabel: bool) -> sparse.csr_matrix:
    """Sparse profile x label indicator (missing labels: an empty row)."""
    items = split_labels(labels) if multilabel else labels.map(lambda x: [] if pd.isna(x) else [x])
    vocab = {v: i for i, v in enumerate(sorted({x for row in items for x in row}))}
    cols = [vocab[x] for row in items for x in row]
    rows = np.repeat(np.arange(len(items)), items.map(len).to_numpy())
    data = np.ones(len(cols), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(items), max(len(vocab), 1)))


def nearest_match_accuracy(
    feats: np.ndarray,
    labels: pd.Series,
    exclude_same: Sequence[pd.Series],
    multilabel: bool = False,
) -> tuple[float, int]:
    """Share of profiles whose nearest neighbour (cosine) shares a label.

    Candidates with the same value as the query in any ``exclude_same`` column (e.g. the
    batch for NSB; batch and perturbation for NSBP) are skipped. Returns (accuracy, number
    of queries that had a candidate); NaN when none had one.
    """
    unit = unit_rows(feats)
    excluded = [codes(col) for col in exclude_same]
    indicator = label_matrix(labels.reset_index(drop=True), multilabel)
    hits, n_queries = 0, 0
    for rows, sims in similarity_blocks(unit):
        for col in excluded:
            sims[col[rows, None] == col[None, :]] = -np.inf
        nearest = sims.argmax(axis=1)
        has_candidate = np.isfinite(sims[np.arange(len(nearest)), nearest])
        shared = indicator[rows].multiply(indicator[nearest]).sum(axis=1).A1 > 0
        hits += int((shared & has_candidate).sum())
        n_queries += int(has_candidate.sum())
    return (hits / n_queries if n_queries else np.nan), n_queries


def f1_at_k(
    feats: np.ndarray,
    labels: pd.Series,
    pos_diffby: Sequence[pd.Series] = (),
    multilabel: bool = False,
    ks: Sequence[int] = F1_KS,
) -> tuple[np.ndarray, int]:
    """Mean F1 over queries of retrieving label-sharing profiles among the k nearest.

    Candidates are positives (share a label, differ in every ``pos_diffby`` column) and
    negatives (share no label), as in the mAP tasks. With fewer than k candidates the
    missing ranks count as misses. Queries without a positive are skipped. Returns the
    mean F1 per k and the number of queries.
    """
    unit = unit_rows(feats)
    indicator = label_matrix(labels.reset_index(drop=True), multilabel)
    differ = [codes(col) for col in pos_diffby]
    ks = np.asarray(ks)
    f1_sum, n_queries = np.zeros(len(ks)), 0
    for rows, sims in similarity_blocks(unit):
        shared = (indicator[rows] @ indicator.T).toarray() > 0
        positive = shared.copy()
        for col in differ:
            positive &= col[rows, None] != col[None, :]
        positive[np.arange(sims.shape[0]), np.arange(rows.start, rows.stop)] = False
        sims[shared & ~positive] = -np.inf
        n_pos = positive.sum(axis=1)
        keep = n_pos > 0
        if not keep.any():
            continue
        top = np.argsort(-sims[keep], axis=1, kind="stable")[:, : ks.max()]
        relevant = np.take_along_axis(positive[keep], top, axis=1)
        relevant &= np.isfinite(np.take_along_axis(sims[keep], top, axis=1))
        relevant = np.pad(relevant, ((0, 0), (0, ks.max() - relevant.shape[1])))
        tp = np.cumsum(relevant, axis=1)[:, ks - 1]
        precision, recall = tp / ks, tp / n_pos[keep, None]
        with np.errstate(invalid="ignore"):
            f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
        f1_sum += f1.sum(axis=0)
        n_queries += int(keep.sum())
    return (f1_sum / n_queries if n_queries else np.full(len(ks), np.nan)), n_queries


def knn_graph(feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours (cosine, self excluded), nearest first.

    Returns (indices, Euclidean distances between the unit-norm rows), both (n, k).
    """
    unit = unit_rows(feats)
    k = min(k, len(unit) - 1)
    index = np.empty((len(unit), k), dtype=np.int64)
    cosine = np.empty((len(unit), k), dtype=np.float32)
    for rows, sims in similarity_blocks(unit):
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        index[rows] = np.take_along_axis(part, order, axis=1)
        cosine[rows] = np.take_along_axis(part_sims, order, axis=1)
    return index, np.sqrt(np.clip(2.0 - 2.0 * cosine, 0.0, None))
