"""copairs mAP wrappers: planted structure and the LINCS plate copairs reference."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from copairs.matching import assign_reference_index

from paintssl.metrics_map import average_precision, split_labels, summarize_map

LINCS = Path("/work/shared/data/cytominer-eval-lincs")
LINCS_PLATE = LINCS / "SQ00015054_normalized_feature_select.csv.gz"
REFERENCE = LINCS / "derived_copairs_reference"


def replicate_table(n_groups: int, n_reps: int, noise: float, seed: int = 0):
    """``n_groups`` groups of ``n_reps`` replicates around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_groups, 16))
    labels = np.repeat(np.arange(n_groups), n_reps)
    feats = centres[labels] + noise * rng.standard_normal((len(labels), 16))
    meta = pd.DataFrame(
        {"label": [f"g{i}" for i in labels], "batch": np.tile(np.arange(n_reps), n_groups)}
    )
    return meta, feats


def test_perfect_replicates_give_map_one_and_full_retrieval() -> None:
    meta, feats = replicate_table(n_groups=10, n_reps=4, noise=0.0)
    ap = average_precision(meta, feats, ["label"], pos_diffby=["batch"])
    summary, per_group = summarize_map(ap, "label", null_size=1000, seed=0)
    assert summary.value == pytest.approx(1.0)
    assert summary.n_queries == 40
    assert summary.fraction_retrieved == 1.0
    assert summary.p_value == pytest.approx(1 / 1001)
    assert len(per_group) == 10


def test_random_features_give_chance_map() -> None:
    meta, _ = replicate_table(n_groups=20, n_reps=4, noise=0.0)
    feats = np.random.default_rng(1).standard_normal((len(meta), 16))
    ap = average_precision(meta, feats, ["label"])
    summary, _ = summarize_map(ap, "label", null_size=1000, seed=0)
    # 3 positives among 79 candidates: expected random AP is ~0.07
    assert 0.02 < summary.value < 0.15
    assert summary.p_value > 0.05
    assert summary.fraction_retrieved == 0.0


def test_no_positive_pairs_gives_empty_table_and_nan_summary() -> None:
    meta = pd.DataFrame({"label": ["a", "b", "c"]})
    ap = average_precision(meta, np.eye(3), ["label"])
    summary, per_group = summarize_map(ap, "label", null_size=100, seed=0)
    assert ap.empty
    assert per_group.empty
    assert np.isnan(summary.value)
    assert summary.n_queries == 0


def test_split_labels_strips_and_deduplicates() -> None:
    out = split_labels(pd.Series(["B|A", "A| A ", "C"]))
    assert out.tolist() == [["A", "B"], ["A"], ["C"]]


def test_multilabel_profiles_sharing_any_label_are_positives() -> None:
    meta = pd.DataFrame({"target": ["A|B", "B", "C", "C|D", "E"]})
    feats = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [-1, -1]], dtype=float)
    ap = average_precision(meta, feats, ["target"], multilabel_col="target")
    assert set(ap["target"]) == {"B", "C"}
    assert ap["average_precision"].tolist() == pytest.approx([1.0] * 4)


def read_lincs() -> pd.DataFrame:
    if not LINCS_PLATE.exists():
        pytest.skip(f"LINCS reference plate absent: {LINCS_PLATE}")
    df = pd.read_csv(LINCS_PLATE)
    return df.loc[:, df.nunique() > 1].copy()


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    meta = df.filter(like="Metadata_")
    return meta, df.drop(columns=meta.columns).to_numpy()


def test_lincs_activity_matches_copairs_reference() -> None:
    """SOURCE.md protocol step 2: DMSO as reference, doses as replicates."""
    df = assign_reference_index(
        read_lincs(), "Metadata_broad_sample == 'DMSO'", reference_col="Metadata_reference_index"
    )
    sameby = ["Metadata_broad_sample", "Metadata_reference_index"]
    ap = average_precision(*split(df), sameby)
    ap = ap[ap["Metadata_broad_sample"] != "DMSO"]
    ref_ap = pd.read_csv(REFERENCE / "activity_ap.csv")
    merged = ap.merge(ref_ap, on="Metadata_Well", suffixes=("", "_ref"), validate="one_to_one")
    assert len(merged) == len(ref_ap) == 360
    np.testing.assert_allclose(merged["average_precision"], merged["average_precision_ref"])

    summary, per_group = summarize_map(ap, "Metadata_broad_sample", null_size=5000, seed=0)
    ref_map = pd.read_csv(REFERENCE / "activity_map.csv")
    both = per_group.merge(ref_map, on="Metadata_broad_sample", suffixes=("", "_ref"))
    assert len(both) == 58
    np.testing.assert_allclose(both["mean_average_precision"], both["mean_average_precision_ref"])
    # reference null has 1e6 draws, ours 5000: p-values agree to sampling error
    np.testing.assert_allclose(both["p_value"], both["p_value_ref"], atol=0.02)
    assert summary.value == pytest.approx(0.6178, abs=1e-4)
    assert summary.fraction_retrieved == pytest.approx(
        ref_map["below_corrected_p"].mean(), abs=0.07
    )


def test_lincs_target_consistency_matches_copairs_reference() -> None:
    """SOURCE.md protocol step 3: active compounds, median per compound, split targets."""
    df = read_lincs()
    active = pd.read_csv(REFERENCE / "activity_map.csv").query("below_corrected_p")
    df = df[df["Metadata_broad_sample"].isin(active["Metadata_broad_sample"])]
    keys = ["Metadata_broad_sample", "Metadata_target"]
    features = [c for c in df.columns if not c.startswith("Metadata_")]
    consensus = df.groupby(keys)[features].median().reset_index()
    ap = average_precision(*split(consensus), ["Metadata_target"], multilabel_col="Metadata_target")
    ref_ap = pd.read_csv(REFERENCE / "consistency_target_ap.csv")
    merged = ap.merge(ref_ap, on=["Metadata_broad_sample", "Metadata_target"], suffixes=("", "_r"))
    assert len(merged) == len(ap) == len(ref_ap)
    np.testing.assert_allclose(merged["average_precision"], merged["average_precision_r"])

    _, per_group = summarize_map(ap, "Metadata_target", null_size=5000, seed=0)
    ref_map = pd.read_csv(REFERENCE / "consistency_target_map.csv")
    both = per_group.merge(ref_map, on="Metadata_target", suffixes=("", "_ref"))
    assert len(both) == len(ref_map)
    np.testing.assert_allclose(both["mean_average_precision"], both["mean_average_precision_ref"])
    np.testing.assert_allclose(both["p_value"], both["p_value_ref"], atol=0.03)
