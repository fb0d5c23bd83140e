"""Nearest-neighbour, batch-effect and gene-family metrics on planted structure."""

import numpy as np
import pandas as pd
import pytest
from harmonypy import compute_lisi
from sklearn.metrics import silhouette_score

from paintssl.evaluate.batch import gaussian_clusters, graph_connectivity, lisi_at_k, silhouettes
from paintssl.evaluate.family import cluster_families
from paintssl.evaluate.knn import (
    largest,
    nearest_match_accuracy,
    neighbour_search,
    separated,
    unit_rows,
)
from paintssl.evaluate.wells import nearest_neighbour_rows


def test_nsb_accuracy_counts_only_other_batch_neighbours() -> None:
    # each perturbation: two identical wells in batch 0, a noisy one in batch 1
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 8))
    feats = np.concatenate([centres, centres, centres + 0.1 * rng.standard_normal((6, 8))])
    labels = pd.Series(np.tile(np.arange(6), 3).astype(str))
    batch = pd.Series([0] * 12 + [1] * 6)
    pool = np.ones(18, dtype=bool)
    # k=1: the stored neighbour of a batch-0 well is its same-batch twin -> exhaustive search
    neighbours = neighbour_search(feats, 1)
    accuracy, n = nearest_match_accuracy(neighbours, labels, [batch], pool)
    assert (accuracy, n) == (1.0, 18)
    # excluding the perturbation itself leaves no correct neighbour
    accuracy, _ = nearest_match_accuracy(neighbours, labels, [batch, labels], pool)
    assert accuracy == 0.0


def test_nearest_match_with_few_stored_neighbours_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    batch = pd.Series(rng.integers(0, 4, 400))
    labels = pd.Series(rng.integers(0, 40, 400).astype(str))
    feats = (
        rng.standard_normal((400, 12)) + 4 * np.eye(12)[batch] + np.eye(12)[labels.astype(int) % 12]
    )
    pool = rng.random(400) < 0.8
    unit = unit_rows(feats)
    sims = unit @ unit.T
    sims[(batch.to_numpy()[:, None] == batch.to_numpy()[None, :]) | ~pool[None, :]] = -np.inf
    nearest = sims.argmax(axis=1)
    expected = (labels.to_numpy()[nearest] == labels.to_numpy())[pool].mean()
    for k in (1, 5, 399):  # with strong batch effects most queries need the exhaustive search
        accuracy, n = nearest_match_accuracy(neighbour_search(feats, k), labels, [batch], pool)
        assert accuracy == pytest.approx(expected)
        assert n == pool.sum()


def test_multilabel_match_shares_any_label() -> None:
    feats = np.array([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    labels = pd.Series(["A|B", "B|C", "D", "E"])
    pool = np.ones(4, dtype=bool)
    accuracy, n = nearest_match_accuracy(neighbour_search(feats, 3), labels, [], pool, True)
    assert (accuracy, n) == (0.5, 4)


def test_silhouettes_equal_sklearn_on_the_same_subset() -> None:
    rng = np.random.default_rng(0)
    batch = pd.Series(rng.integers(0, 3, 500).astype(str))
    other = pd.Series(rng.integers(0, 5, 500).astype(str))
    feats = rng.standard_normal((500, 16)) + np.eye(16)[batch.astype(int)]
    for max_samples in (None, 300):
        ours = silhouettes(feats, [batch, other], max_samples, seed=4)
        for labels, value in zip([batch, other], ours, strict=True):
            ref = silhouette_score(
                feats, labels, metric="cosine", sample_size=max_samples, random_state=4
            )
            assert value == pytest.approx(ref, abs=1e-5)
    assert np.isnan(silhouettes(feats, [pd.Series(["a"] * 500)], None, 0)[0])


def test_chunked_top_k_equals_partition_with_ties() -> None:
    rng = np.random.default_rng(0)
    sims = np.round(rng.standard_normal((50, 20_000)), 1).astype(np.float32)  # many ties
    cols, values = largest(sims, 30)
    expected = -np.sort(-sims, axis=1)[:, :30]
    np.testing.assert_array_equal(np.sort(values, axis=1)[:, ::-1], expected)
    np.testing.assert_array_equal(np.take_along_axis(sims, cols, axis=1), values)
    assert all(len(set(row)) == 30 for row in cols)


def test_grouped_search_is_exact_for_separated_and_overlapping_groups() -> None:
    labels = pd.Series(np.repeat(["b0", "b1", "b2", "b3"], 60))
    groups = pd.factorize(labels)[0]
    clusters = gaussian_clusters(labels, n_features=16, seed=0)
    noisy = np.random.default_rng(1).standard_normal((240, 16))
    for feats, n_separated in ((clusters, 240), (noisy, 0)):
        full = neighbour_search(feats, 20)
        kth = full.similarity[:, -1]
        assert separated(unit_rows(feats), groups, kth).sum() == n_separated
        grouped = neighbour_search(feats, 20, groups=groups)  # else: the full search
        # the same neighbours up to float32 rounding of near-tied similarities
        np.testing.assert_allclose(grouped.similarity, full.similarity, atol=1e-6)
        assert (grouped.index == full.index).mean() > 0.99


def test_own_lisi_matches_harmonypy() -> None:
    rng = np.random.default_rng(0)
    labels = pd.Series(rng.integers(0, 3, 600).astype(str))
    feats = rng.standard_normal((600, 10))
    feats[:, 0] += labels.astype(int)
    unit = unit_rows(feats).astype(np.float64)
    graph = neighbour_search(unit, 30)
    neighbours, distances = graph.index, graph.distances()
    ours = lisi_at_k(distances, neighbours, labels, 30)
    reference = compute_lisi(unit, pd.DataFrame({"b": labels}), ["b"], perplexity=10)[:, 0]
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_lisi_and_connectivity_on_separated_and_mixed_batches() -> None:
    labels = pd.Series(np.repeat(["b0", "b1", "b2"], 100))
    separated = gaussian_clusters(labels, n_features=16, seed=0)
    graph = neighbour_search(separated, 90)
    neighbours, distances = graph.index, graph.distances()
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


def test_authors_nsb_counts_other_perturbations_of_the_same_batch() -> None:
    # a0's nearest well is b0 of its own batch, then a1 of the other batch
    feats = np.array([[1.0, 0.0], [0.99, 0.14], [0.9, -0.44], [0.0, 1.0]])
    meta = pd.DataFrame(
        {
            "Metadata_pert_type": "trt",
            "Metadata_JCP2022": ["a", "b", "a", "b"],  # a0, b0, a1, b1
            "Metadata_Batch": ["0", "0", "1", "1"],
            "Metadata_target": None,
            "Metadata_gene_family": None,
        }
    )
    graphs = {"observed": neighbour_search(feats, 3), "random_features": neighbour_search(feats, 3)}
    rows = pd.DataFrame(nearest_neighbour_rows("all", meta, graphs, seed=0))
    observed = rows[rows["variant"] == "observed"].set_index("metric")["value"]
    # NSB: a0 -> a1, b0 -> a1 (wrong), a1 -> a0, b1 -> b0; authors: a0 and b0 pick each other
    assert observed["nsb_accuracy"] == 0.75
    assert observed["nsb_accuracy_authors"] == 0.5
