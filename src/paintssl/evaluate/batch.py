"""Batch and source effects on well profiles: silhouette, graph connectivity, LISI, baselines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from paintssl.evaluate.knn import BLOCK, unit_rows

GC_KS: tuple[int, ...] = (1, 2, 3, 5, 10, 15)
LISI_KS: tuple[int, ...] = (15, 30, 60, 90)
PERPLEXITY_TOLERANCE = 1e-5
PERPLEXITY_TRIES = 50


def silhouettes(
    feats: np.ndarray, label_sets: Sequence[pd.Series], max_samples: int | None, seed: int
) -> list[float]:
    """Mean cosine silhouette for each labeling of the same profiles, from one distance pass.

    Equals sklearn's ``silhouette_score(metric="cosine", sample_size=max_samples,
    random_state=seed)``: on more than ``max_samples`` profiles it scores the same random
    subset (silhouette is quadratic in the number of profiles). NaN where the subset has
    fewer than 2 labels, or as many labels as profiles.
    """
    n = len(feats)
    sample = np.arange(n)
    if max_samples is not None and n > max_samples:
        sample = np.random.RandomState(seed).permutation(n)[:max_samples]
    unit = unit_rows(np.asarray(feats)[sample])
    label_codes = [pd.factorize(labels.to_numpy()[sample])[0] for labels in label_sets]
    onehot = np.concatenate([np.eye(c.max() + 1, dtype=np.float32)[c] for c in label_codes], axis=1)
    sums = np.zeros(onehot.shape, dtype=np.float64)
    for start in range(0, len(unit), BLOCK):  # distances are symmetric: blocks on and right of
        rows = slice(start, min(start + BLOCK, len(unit)))  # the diagonal serve both sides
        size = rows.stop - start
        distance = np.clip(1.0 - unit[rows] @ unit[start:].T, 0.0, 2.0)
        distance[np.arange(size), np.arange(size)] = 0.0
        sums[rows] += distance @ onehot[start:]
        sums[rows.stop :] += distance[:, size:].T @ onehot[rows]
    out, start = [], 0
    for c in label_codes:
        n_labels = c.max() + 1
        block = sums[:, start : start + n_labels]
        start += n_labels
        out.append(silhouette_from_sums(block, c) if 2 <= n_labels < len(c) else np.nan)
    return out


def silhouette_from_sums(sums: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from each profile's summed distance to every cluster (sklearn's rule)."""
    sizes = np.bincount(labels).astype(np.float64)
    rows = np.arange(len(labels))
    own_size = sizes[labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = sums[rows, labels] / (own_size - 1)
        mean_to = sums / sizes
        mean_to[rows, labels] = np.inf
        inter = mean_to.min(axis=1)
        score = (inter - intra) / np.maximum(intra, inter)
    return float(np.nan_to_num(np.where(own_size > 1, score, 0.0)).mean())


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


def lisi_probabilities(distances: np.ndarray, perplexity: float) -> np.ndarray:
    """Neighbour weights of a Gaussian kernel calibrated to ``perplexity`` (harmonypy's LISI).

    Bisection on the kernel precision, per profile, only for the profiles not yet within
    tolerance. Rows whose kernel collapses (zero entropy) are NaN.
    """
    dist = distances.astype(np.float64)
    n = len(dist)
    target = np.log(perplexity)
    beta = np.ones(n)
    low, high = np.full(n, -np.inf), np.full(n, np.inf)
    entropy = np.zeros(n)
    active = np.arange(n)
    for attempt in range(PERPLEXITY_TRIES + 1):
        weights = np.exp(-dist[active] * beta[active, None])
        total = weights.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy[active] = (
                np.log(total) + beta[active] * (dist[active] * weights).sum(axis=1) / total
            )
        diff = entropy[active] - target
        todo = np.abs(diff) > PERPLEXITY_TOLERANCE
        active, diff = active[todo], diff[todo]
        if not len(active) or attempt == PERPLEXITY_TRIES:
            break
        up, down = active[diff > 0], active[diff <= 0]
        low[up], high[down] = beta[up], beta[down]
        beta[up] = np.where(np.isinf(high[up]), beta[up] * 2, (beta[up] + high[up]) / 2)
        beta[down] = np.where(np.isinf(low[down]), beta[down] / 2, (beta[down] + low[down]) / 2)
    weights = np.exp(-dist * beta[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = weights / weights.sum(axis=1, keepdims=True)
    prob[entropy == 0] = np.nan
    return prob


def inverse_simpson(prob: np.ndarray, neighbour_labels: np.ndarray) -> np.ndarray:
    """LISI per profile: 1 / sum over labels of (kernel weight of that label's neighbours)^2."""
    simpson = np.zeros(len(prob))
    for code in np.unique(neighbour_labels):
        simpson += (prob * (neighbour_labels == code)).sum(axis=1) ** 2
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(simpson) & (simpson > 0), 1 / simpson, np.nan)


def lisi_at_k(
    distances: np.ndarray,
    neighbours: np.ndarray,
    labels: pd.Series,
    k: int,
    kernel: np.ndarray | None = None,
) -> np.ndarray:
    """LISI on ``k`` neighbours at perplexity ``k / 3`` (harmonypy's ``compute_lisi``).

    ``kernel`` is ``lisi_probabilities(distances[:, :k], k / 3)`` when already computed
    (it depends on the neighbours only, so labelings of the same profiles share it).
    """
    prob = lisi_probabilities(distances[:, :k], k / 3) if kernel is None else kernel
    return inverse_simpson(prob, pd.factorize(labels)[0][neighbours[:, :k]])


def gaussian_clusters(
    labels: pd.Series, n_features: int, seed: int, separation: float = 100.0
) -> np.ndarray:
    """Return unit Gaussian clouds, one per label, centres ``separation`` apart (no overlap)."""
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(labels)
    centres = rng.standard_normal((len(uniques), n_features))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    return centres[codes] + rng.standard_normal((len(codes), n_features))


def effect_metrics(
    feats: np.ndarray,
    neighbours: np.ndarray,
    distances: np.ndarray,
    label_sets: Sequence[pd.Series],
    max_silhouette: int | None,
    seed: int,
    gc_ks: Sequence[int] = GC_KS,
    lisi_ks: Sequence[int] = LISI_KS,
) -> list[list[tuple[str, float]]]:
    """(metric, value) for silhouette, graph connectivity and mean LISI at each k, per labeling.

    All labelings share the profiles' kNN graph, silhouette distances and LISI kernels.
    """
    kernels = {k: lisi_probabilities(distances[:, :k], k / 3) for k in lisi_ks}
    out = []
    for labels, silhouette in zip(
        label_sets, silhouettes(feats, label_sets, max_silhouette, seed), strict=True
    ):
        values = [("silhouette", silhouette)]
        values += [
            (f"graph_connectivity_k{k}", graph_connectivity(neighbours, labels, k)) for k in gc_ks
        ]
        lisi = {k: lisi_at_k(distances, neighbours, labels, k, kernels[k]) for k in lisi_ks}
        values += [(f"lisi_k{k}", float(np.nanmean(lisi[k]))) for k in lisi_ks]
        out.append(values)
    return out
