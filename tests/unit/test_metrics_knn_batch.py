"""Nearest-neighbour, F1@k, batch-effect and gene-family metrics on planted structure."""

import numpy as np
import pandas as pd
import pytest
from harmonypy import compute_lisi

from paintssl.metrics_batch import gaussian_clusters, graph_connectivity, lisi_at_k
from paintssl.metrics_family import cluster_families
from paintssl.metrics_knn import f1_at_k, knn_graph, nearest_match_accuracy, unit_rows


def test_nsb_accuracy_counts_only_other_batch_neighbours() -> None:
    # each perturbation: two identical wells in batch 0, a noisy one in batch 1
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 8))
    feats = np.concatenate([centres, centres, centres + 0.1 * rng.standard_normal((6, 8))])
    labels = pd.Series(np.tile(np.arange(6), 3).astype(str))
    batch = pd.Series([0] * 12 + [1] * 6)
    accuracy, n = nearest_match_accuracy(feats, labels, [batch])
    assert (accuracy, n) == (1.0, 18)
    # excluding the perturbation itself leaves no correct neighbour
    accuracy, _ = nearest_match_accuracy(feats, labels, [batch, labels])
    assert accuracy == 0.0


def test_multilabel_match_shares_any_label() -> None:
    feats = np.array([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    labels = pd.Series(["A|B", "B|C", "D", "E"])
    accuracy, n = nearest_match_accuracy(feats, labels, [], multilabel=True)
    assert (accuracy, n) == (0.5, 4)


def test_f1_at_k_for_perfect_replicates() -> None:
    centres = np.random.default_rng(1).standard_normal((10, 8))
    feats = np.repeat(centres, 3, axis=0)
    labels = pd.Series(np.repeat(np.arange(10), 3).astype(str))
    f1, n = f1_at_k(feats, labels, ks=(1, 2, 3))
    # 2 positives per query: k=1 -> P=1, R=.5; k=2 -> 1; k=3 -> P=2/3, R=1
    np.testing.assert_allclose(f1, [2 / 3, 1.0, 0.8])
    assert n == 30


def test_own_lisi_matches_harmonypy() -> None:
    rng = np.random.default_rng(0)
    labels = pd.Series(rng.integers(0, 3, 600).astype(str))
    feats = rng.standard_normal((600, 10))
    feats[:, 0] += labels.astype(int)
    unit = unit_rows(feats).astype(np.float64)
    neighbours, distances = knn_graph(unit, 30)
    ours = lisi_at_k(distances, neighbours, labels, 30)
    reference = compute_lisi(unit, pd.DataFrame({"b": labels}), ["b"], perplexity=10)[:, 0]
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_lisi_and_connectivity_on_separated_and_mixed_batches() -> None:
    labels = pd.Series(np.repeat(["b0", "b1", "b2"], 100))
    separated = gaussian_clusters(labels, n_features=16, seed=0)
    neighbours, distances = knn_graph(separated, 90)
    assert np.nanmean(lisi_at_k(distances, neighbours, labels, 90)) == pytest.approx(1.0)
    assert graph_connectivity(neighbours, labels, 15) == 1.0
    mixed = pd.Series(np.random.default_rng(0).permutation(labels.to_numpy()))
    # fully mixed: close to the number of batches (3)
    assert np.nanmean(lisi_at_k(distances, neighbours, mixed, 90)) > 2.6
    assert graph_connectivity(neighbours, mixed, 15) < 1.0


def test_gene_family_clustering_recovers_planted_families() -> None:
    rng = np.random.default_rng(0)
    families = np.repeat([f"F{i}" for i in range(5)], 5)
    centres = rng.standard_normal((5, 32)) * 3
    feats = centres[np.repeat(np.arange(5), 5)] + rng.standard_normal((25, 32))
    meta = pd.DataFrame({"Metadata_gene_family": families, "Metadata_gene": range(25)})
    result = cluster_families(meta, feats)
    assert result.ami == pytest.approx(1.0)
    assert result.correlation.shape == (25, 25)
    too_small = cluster_families(meta.iloc[:6], feats[:6])
    assert np.isnan(too_small.ami)
    assert "gene families" in too_small.note
