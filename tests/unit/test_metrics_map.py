"""Own mAP against copairs: planted tables with ties, nulls, p-values, LINCS reference."""

import numpy as np
import pandas as pd
import pytest
from copairs import compute
from copairs import map as copairs_map
from copairs.matching import assign_reference_index
from scipy.stats import ks_2samp
from statsmodels.stats.multitest import multipletests

from paintssl.evaluate import map as metrics_map
from paintssl.evaluate.map import (
    average_precision,
    f1_at_k,
    labeling,
    null_average_precision,
    rank_positives,
    split_labels,
    summarize_map,
    summary_p_value,
)
from tests.paths import SHARED_DATA, require_shared

LINCS = SHARED_DATA / "cytominer-eval-lincs"
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


def tied_table(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Weak planted groups; rounded features and duplicated rows make many tied similarities."""
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame(
        {
            "row": np.arange(n),
            "label": rng.integers(0, 30, n).astype(str),
            "batch": rng.integers(0, 3, n).astype(str),
            "src": rng.integers(0, 2, n).astype(str),
        }
    )
    centres = rng.standard_normal((30, 6))
    feats = np.round(centres[meta["label"].astype(int)] + rng.standard_normal((n, 6)))
    feats[40:60] = feats[0:20]
    feats[np.abs(feats).sum(axis=1) == 0, 0] = 1.0
    return meta, feats


def copairs_ap(meta, feats, sameby, pos_diffby, multilabel_col=None) -> pd.DataFrame:
    pairs = {"pos_sameby": sameby, "pos_diffby": pos_diffby, "neg_sameby": []}
    if multilabel_col is None:
        ap = copairs_map.average_precision(
            meta, feats, **pairs, neg_diffby=sameby, progress_bar=False
        )
    else:
        ap = copairs_map.multilabel.average_precision(
            meta.assign(**{multilabel_col: split_labels(meta[multilabel_col])}),
            feats,
            **pairs,
            neg_diffby=sameby,
            multilabel_col=multilabel_col,
            progress_bar=False,
        )
    return ap[ap["n_pos_pairs"] > 0].reset_index(drop=True)


@pytest.mark.parametrize(
    ("sameby", "pos_diffby"),
    [(["label"], []), (["label"], ["batch"]), (["label", "src"], ["batch"])],
)
def test_ap_equals_copairs_with_ties(sameby: list[str], pos_diffby: list[str]) -> None:
    meta, feats = tied_table()
    ours = average_precision(meta, feats, sameby, pos_diffby)
    ref = copairs_ap(meta, feats, sameby, pos_diffby)
    assert ours["row"].tolist() == ref["row"].tolist()
    np.testing.assert_array_equal(ours["n_pos_pairs"], ref["n_pos_pairs"])
    np.testing.assert_array_equal(ours["n_total_pairs"], ref["n_total_pairs"])
    # identical ranks; only the float summation order may differ
    np.testing.assert_allclose(ours["average_precision"], ref["average_precision"], rtol=1e-12)


def test_multilabel_ap_equals_copairs_with_ties() -> None:
    meta, feats = tied_table()
    rng = np.random.default_rng(1)
    meta["target"] = [
        "|".join(rng.choice(list("ABCDEFGHIJKL"), rng.integers(1, 3))) for _ in meta.index
    ]
    keep = np.arange(len(meta)) % 17 != 0  # copairs needs rows without a target dropped
    ours = average_precision(
        meta.assign(target=meta["target"].where(keep)), feats, ["target"], ["batch"], "target"
    )
    ref = copairs_ap(
        meta[keep].reset_index(drop=True), feats[keep], ["target"], ["batch"], "target"
    )
    both = ours.merge(ref, on=["row", "target"], suffixes=("", "_ref"), validate="one_to_one")
    assert len(both) == len(ours) == len(ref)
    np.testing.assert_array_equal(both["n_total_pairs"], both["n_total_pairs_ref"])
    np.testing.assert_allclose(both["average_precision"], both["average_precision_ref"], rtol=1e-12)


@pytest.mark.parametrize(("n_pos", "n_total"), [(3, 50), (7, 2000), (30, 60)])
def test_null_has_copairs_distribution(n_pos: int, n_total: int) -> None:
    """Both samplers (rejection for few positives, random order otherwise) match copairs'."""
    ours = null_average_precision(n_pos, n_total, 20_000, seed=0)
    ref = compute.random_ap(20_000, n_pos, n_total, seed=0)
    assert ours.dtype == ref.dtype
    assert ks_2samp(ours, ref).pvalue > 0.001
    assert ours.mean() == pytest.approx(ref.mean(), abs=4 * ref.std() / np.sqrt(5000))


def test_group_p_values_match_copairs_within_sampling_error() -> None:
    meta, feats = tied_table()
    ap = copairs_ap(meta, feats, ["label"], ["batch"])
    _, ours = summarize_map(ap, "label", null_size=5000, seed=0)
    ref = copairs_map.mean_average_precision(
        ap, ["label"], null_size=5000, threshold=0.05, seed=0, progress_bar=False
    )
    both = ours.merge(ref, on="label", suffixes=("", "_ref"), validate="one_to_one")
    assert len(both) == ap["label"].nunique()
    np.testing.assert_allclose(both["mean_average_precision"], both["mean_average_precision_ref"])
    np.testing.assert_allclose(both["p_value"], both["p_value_ref"], atol=0.03)
    assert 0 < both["below_corrected_p"].sum() < len(both)
    bh = multipletests(ours["p_value"], method="fdr_bh")[1]
    np.testing.assert_allclose(ours["corrected_p_value"], bh)


def test_summary_p_value_normal_limit_matches_exact_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    null = null_average_precision(3, 100, 4000, seed=0)[None, :]
    inverse, weights = np.zeros(400, dtype=int), np.full(400, 1 / 400)
    value = null.mean() + 1.5 * null.std() / np.sqrt(400)  # p ~ 1 - Phi(1.5) = 0.067
    normal = summary_p_value(value, weights, inverse, null, seed=0)
    monkeypatch.setattr(metrics_map, "CLT_MIN", 10**9)
    exact = summary_p_value(value, weights, inverse, null, seed=0)
    assert 0.04 < exact < 0.1
    assert normal == pytest.approx(exact, abs=0.02)


def test_f1_at_k_equals_brute_force_ranking() -> None:
    meta, feats = tied_table(n=120)
    feats = feats + 0.01 * np.random.default_rng(2).standard_normal(feats.shape)  # no ties
    (ranking,) = rank_positives(feats, [labeling(meta, ["label"], ["batch"])])
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    label, batch = meta["label"].to_numpy(), meta["batch"].to_numpy()
    ks = np.arange(1, 12)
    expected = []
    for q in ranking.query:
        positive = (label == label[q]) & (batch != batch[q])
        candidates = np.flatnonzero(positive | (label != label[q]))
        ranked = candidates[np.argsort(-(unit[candidates] @ unit[q]))]
        tp = np.cumsum(positive[ranked])[np.minimum(ks, len(ranked)) - 1]
        expected.append(2 * tp / (ks + positive.sum()))
    np.testing.assert_allclose(f1_at_k(ranking, ks), np.mean(expected, axis=0))


def test_f1_at_k_for_perfect_replicates() -> None:
    centres = np.random.default_rng(1).standard_normal((10, 8))
    meta = pd.DataFrame({"label": np.repeat(np.arange(10), 3).astype(str)})
    (ranking,) = rank_positives(np.repeat(centres, 3, axis=0), [labeling(meta, ["label"])])
    # 2 positives per query: k=1 -> P=1, R=.5; k=2 -> 1; k=3 -> P=2/3, R=1
    np.testing.assert_allclose(f1_at_k(ranking, (1, 2, 3)), [2 / 3, 1.0, 0.8])
    assert len(ranking.n_pos) == 30


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
    require_shared(LINCS_PLATE)
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
