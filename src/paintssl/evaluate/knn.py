"""One cosine neighbour search per feature matrix, shared by the kNN graph and NSB/NSBP accuracy.

:func:`neighbour_search` keeps the ``k`` nearest neighbours of every profile (matrix products
of float32 unit rows, a block of queries at a time). NSB/NSBP accuracy walks that list for the
first allowed candidate and searches the whole matrix again only for the queries whose ``k``
nearest are all excluded (e.g. all from the query's own batch), so the result is exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from paintssl.tables import codes, split_labels

BLOCK = 512
CHUNK = 64  # columns per chunk in the top-k search
SEPARATION_MARGIN = 1e-4  # float32 rounding of the similarities


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` nearest neighbours of every profile (cosine, self excluded), nearest first."""

    unit: np.ndarray
    index: np.ndarray
    similarity: np.ndarray

    def distances(self) -> np.ndarray:
        """Euclidean distances between the unit rows, (n, k)."""
        return np.sqrt(np.clip(2.0 - 2.0 * self.similarity, 0.0, None))


def unit_rows(feats: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32), so a dot product is the cosine similarity."""
    feats = np.asarray(feats, dtype=np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.where(norms > 0, norms, 1.0)


def similarity_blocks(
    unit: np.ndarray, queries: np.ndarray, block: int = BLOCK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(query rows, their cosine similarities to all rows) with self-similarity set to -inf."""
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        sims = unit[rows] @ unit.T
        sims[np.arange(len(rows)), rows] = -np.inf
        yield rows, sims


def neighbour_search(feats: np.ndarray, k: int, groups: np.ndarray | None = None) -> Neighbours:
    """Return the ``k`` nearest neighbours (cosine) of every row, in one pass over the matrix.

    With ``groups`` (integer codes, e.g. well-separated clusters) each group is first
    searched within itself; a profile keeps that result when its k-th neighbour is provably
    more similar than any profile of another group (bound from each group's angular radius
    around its mean direction). Other profiles are searched among all, so the result is exact.
    """
    unit = unit_rows(feats)
    k = min(k, len(unit) - 1)
    index = np.zeros((len(unit), k), dtype=np.int64)
    similarity = np.full((len(unit), k), -np.inf, dtype=np.float32)
    todo = np.arange(len(unit))
    if groups is not None:
        for code in np.unique(groups):
            members = np.flatnonzero(groups == code)
            if len(members) > k:
                top_k(unit, members, members, index, similarity)
        todo = np.flatnonzero(~separated(unit, groups, similarity[:, -1]))
    top_k(unit, todo, np.arange(len(unit)), index, similarity)
    return Neighbours(unit, index, similarity)


def top_k(
    unit: np.ndarray,
    queries: np.ndarray,
    candidates: np.ndarray,
    index: np.ndarray,
    similarity: np.ndarray,
) -> None:
    """Fill ``index``/``similarity`` rows of ``queries`` with their nearest ``candidates``.

    ``candidates`` is sorted and contains every query (which is never its own neighbour).
    """
    k = index.shape[1]
    pool = unit[candidates]
    own = np.searchsorted(candidates, queries)
    for start in range(0, len(queries), BLOCK):
        rows = queries[start : start + BLOCK]
        sims = unit[rows] @ pool.T
        sims[np.arange(len(rows)), own[start : start + BLOCK]] = -np.inf
        part, part_sims = largest(sims, k)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        index[rows] = candidates[np.take_along_axis(part, order, axis=1)]
        similarity[rows] = np.take_along_axis(part_sims, order, axis=1)


def largest(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row (unordered).

    The k chunks of ``CHUNK`` columns with the largest maxima hold the k largest entries,
    so only those are partitioned (a partial sort of every entry costs far more).
    """
    n_rows, n = sims.shape
    if n <= 4 * k * CHUNK:
        part = np.argpartition(sims, -k, axis=1)[:, -k:]
        return part, np.take_along_axis(sims, part, axis=1)
    whole = n - n % CHUNK
    maxima = sims[:, :whole].reshape(n_rows, -1, CHUNK).max(axis=2)
    if whole < n:
        maxima = np.concatenate([maxima, sims[:, whole:].max(axis=1, keepdims=True)], axis=1)
    chunks = np.argpartition(maxima, -k, axis=1)[:, -k:]
    cols = (chunks[:, :, None] * CHUNK + np.arange(CHUNK)).reshape(n_rows, -1)
    values = np.take_along_axis(sims, np.minimum(cols, n - 1), axis=1)
    values[cols >= n] = -np.inf
    part = np.argpartition(values, -k, axis=1)[:, -k:]
    return np.take_along_axis(cols, part, axis=1), np.take_along_axis(values, part, axis=1)


def separated(unit: np.ndarray, groups: np.ndarray, kth_similarity: np.ndarray) -> np.ndarray:
    """Return True where no profile of another group can be as similar as ``kth_similarity``.

    A group lies within angle r of its mean direction c, so a profile at angle a from c is
    at least a - r away from every member (cosine <= cos(max(a - r, 0))).
    """
    codes, uniques = pd.factorize(groups)
    centre = sparse.csr_matrix(
        (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(uniques), len(codes))
    ) @ unit.astype(np.float64)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    angle = np.arccos(np.clip(unit.astype(np.float64) @ centre.T, -1.0, 1.0))
    rows = np.arange(len(codes))
    radius = pd.Series(angle[rows, codes]).groupby(codes).max().to_numpy()
    bound = np.cos(np.clip(angle - radius[None, :], 0.0, np.pi))
    bound[rows, codes] = -np.inf
    return bound.max(axis=1, initial=-np.inf) < kth_similarity - SEPARATION_MARGIN


def label_matrix(labels: pd.Series, multilabel: bool) -> sparse.csr_matrix:
    """Sparse profile x label indicator (missing labels: an empty row)."""
    items = split_labels(labels) if multilabel else labels.map(lambda x: [] if pd.isna(x) else [x])
    vocab = {v: i for i, v in enumerate(sorted({x for row in items for x in row}))}
    cols = [vocab[x] for row in items for x in row]
    rows = np.repeat(np.arange(len(items)), items.map(len).to_numpy())
    data = np.ones(len(cols), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(items), max(len(vocab), 1)))


def allowed(
    queries: np.ndarray, candidates: np.ndarray, pool: np.ndarray, excluded: Sequence[np.ndarray]
) -> np.ndarray:
    """Return True where a candidate is in the pool and differs from its query in every code.

    ``candidates`` is (len(queries), m); the result has its shape.
    """
    ok = pool[candidates]
    for col in excluded:
        ok &= col[candidates] != col[queries, None]
    return ok


def nearest_allowed(
    neighbours: Neighbours, queries: np.ndarray, pool: np.ndarray, excluded: Sequence[np.ndarray]
) -> np.ndarray:
    """Each query's nearest neighbour in ``pool`` that differs in every excluded code (-1: none).

    Taken from the stored neighbours; queries whose stored neighbours are all excluded are
    searched exhaustively.
    """
    ok = allowed(queries, neighbours.index[queries], pool, excluded)
    first = ok.argmax(axis=1)
    nearest = np.where(ok.any(axis=1), neighbours.index[queries, first], -1)
    missing = np.flatnonzero(nearest < 0)
    blocks = similarity_blocks(neighbours.unit, queries[missing])
    for start, (rows, sims) in zip(range(0, len(missing), BLOCK), blocks, strict=True):
        candidates = np.broadcast_to(np.arange(len(pool)), sims.shape)
        sims[~allowed(rows, candidates, pool, excluded)] = -np.inf
        best = sims.argmax(axis=1)
        found = np.isfinite(sims[np.arange(len(rows)), best])
        nearest[missing[start : start + len(rows)]] = np.where(found, best, -1)
    return nearest


def nearest_match_accuracy(
    neighbours: Neighbours,
    labels: pd.Series,
    exclude_same: Sequence[pd.Series],
    pool: np.ndarray,
    multilabel: bool = False,
) -> tuple[float, int]:
    """Share of pool profiles whose nearest allowed neighbour (cosine) shares a label.

    Queries and candidates are the ``pool`` rows (boolean mask over the searched profiles);
    candidates with the query's value in any ``exclude_same`` column (the batch for NSB;
    batch and perturbation for NSBP) are skipped. Returns (accuracy, number of queries that
    had a candidate); NaN when none had one.
    """
    queries = np.flatnonzero(pool)
    excluded = [codes(col.reset_index(drop=True)) for col in exclude_same]
    nearest = nearest_allowed(neighbours, queries, pool, excluded)
    has_candidate = nearest >= 0
    if not has_candidate.any():
        return np.nan, 0
    indicator = label_matrix(labels.reset_index(drop=True), multilabel)
    q, nn = queries[has_candidate], nearest[has_candidate]
    shared = indicator[q].multiply(indicator[nn]).sum(axis=1).A1 > 0
    return float(shared.mean()), int(has_candidate.sum())
