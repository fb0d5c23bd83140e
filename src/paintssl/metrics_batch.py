"""Batch and source effects on well profiles: silhouette, graph connectivity, LISI, baselines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import silhouette_score

GC_KS: tuple[int, ...] = (1, 2, 3, 5, 10, 15)
LISI_KS: tuple[int, ...] = (15, 30, 60, 90)
PERPLEXITY_TOLERANCE = 1e-5
PERPLEXITY_TRIES = 50


def batch_silhouette(
    feats: np.ndarray, labels: pd.Series, max_samples: int | None, seed: int
) -> float:
    """Mean cosine silhouette of the profiles with ``labels`` as clusters (NaN if < 2)."""
    if labels.nunique() < 2 or labels.nunique() >= len(labels):
        return np.nan
    sample_size = None if max_samples is None or len(labels) <= max_samples else max_samples
    return float(
        silhouette_score(
            feats, labels.to_numpy(), metric="cosine", sample_size=sample_size, random_state=seed
        )
    )


def graph_connectivity(neighbours: np.ndarray, labels: pd.Series, k: int) -> float:
    """Mean over clusters of the largest connected share of the cluster's kNN subgraph.

    ``neighbours`` are kNN indices (nearest first); edges are undirected.
    """
    codes = pd.factorize(labels)[0]
    n = len(codes)
    src = np.repeat(np.arange(n), k)
    dst = neighbours[:, :k].ravel()
    same = codes[src] == codes[dst]
    graph = sparse.coo_matrix((np.ones(same.sum()), (src[same], dst[same])), shape=(n, n))
    _, component = connected_components(graph.tocsr(), directed=False)
    shares = []
    for code in np.unique(codes):
        members = component[codes == code]
        shares.append(np.bincount(members).max() / len(members))
    return float(np.mean(shares))


def lisi(
    distances: np.ndarray, neighbours: np.ndarray, labels: pd.Series, perplexity: float
) -> np.ndarray:
    """Local inverse Simpson's index per profile (harmonypy's algorithm, vectorised).

    Calibrates a Gaussian kernel on the given neighbour distances to ``perplexity`` by
    bisection, then takes the inverse Simpson index of the neighbours' labels under it.
    Profiles whose kernel collapses get NaN.
    """
    dist = distances.astype(np.float64)
    codes = pd.factorize(labels)[0][neighbours]
    target = np.log(perplexity)
    beta = np.ones(len(dist))
    low, high = np.full(len(dist), -np.inf), np.full(len(dist), np.inf)
    for _ in range(PERPLEXITY_TRIES + 1):
        weights = np.exp(-dist * beta[:, None])
        total = weights.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = np.log(total) + beta * (dist * weights).sum(axis=1) / total
        diff = entropy - target
        todo = np.abs(diff) > PERPLEXITY_TOLERANCE
        if not todo.any():
            break
        up, down = todo & (diff > 0), todo & (diff <= 0)
        low[up], high[down] = beta[up], beta[down]
        beta[up] = np.where(np.isinf(high[up]), beta[up] * 2, (beta[up] + high[up]) / 2)
        beta[down] = np.where(np.isinf(low[down]), beta[down] / 2, (beta[down] + low[down]) / 2)
    simpson = np.zeros(len(dist))
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = weights / total[:, None]
        for code in np.unique(codes):
            simpson += (prob * (codes == code)).sum(axis=1) ** 2
        return np.where((entropy == 0) | ~np.isfinite(simpson), np.nan, 1 / simpson)


def lisi_at_k(
    distances: np.ndarray, neighbours: np.ndarray, labels: pd.Series, k: int
) -> np.ndarray:
    """LISI on ``k`` neighbours at perplexity ``k / 3`` (harmonypy's ``compute_lisi``)."""
    return lisi(distances[:, :k], neighbours[:, :k], labels, k / 3)


def gaussian_clusters(
    labels: pd.Series, n_features: int, seed: int, separation: float = 100.0
) -> np.ndarray:
    """Unit Gaussian clouds, one per label, centres ``separation`` apart (no overlap)."""
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(labels)
    centres = rng.standard_normal((len(uniques), n_features))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    return centres[codes] + rng.standard_normal((len(codes), n_features))


def effect_metrics(
    feats: np.ndarray,
    neighbours: np.ndarray,
    distances: np.ndarray,
    labels: pd.Series,
    max_silhouette: int | None,
    seed: int,
    gc_ks: Sequence[int] = GC_KS,
    lisi_ks: Sequence[int] = LISI_KS,
) -> list[tuple[str, float]]:
    """(metric name, value) for silhouette, graph connectivity at each k, mean LISI at each k."""
    out = [("silhouette", batch_silhouette(feats, labels, max_silhouette, seed))]
    out += [(f"graph_connectivity_k{k}", graph_connectivity(neighbours, labels, k)) for k in gc_ks]
    out += [
        (f"lisi_k{k}", float(np.nanmean(lisi_at_k(distances, neighbours, labels, k))))
        for k in lisi_ks
    ]
    return out
