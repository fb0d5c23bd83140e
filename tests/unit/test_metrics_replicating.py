"""Replicate reproducibility against cytominer-eval's published numbers on its LINCS plate."""

import numpy as np
import pandas as pd
import pytest

from paintssl.metrics_replicating import (
    median_replicate_correlation,
    precision_recall_at_k,
    replicate_reproducibility,
)
from tests.paths import SHARED_DATA

LINCS_PLATE = SHARED_DATA / "cytominer-eval-lincs" / "SQ00015054_normalized_feature_select.csv.gz"
DOSE_GROUPS = ["Metadata_broad_sample", "Metadata_mg_per_ml"]


@pytest.fixture(scope="module")
def lincs() -> tuple[pd.DataFrame, np.ndarray]:
    if not LINCS_PLATE.exists():
        pytest.skip(f"LINCS reference plate absent: {LINCS_PLATE}")
    df = pd.read_csv(LINCS_PLATE)
    meta = df.filter(like="Metadata_")
    return meta, df.drop(columns=meta.columns).to_numpy()


def test_compound_dose_groups_match_published_value(lincs) -> None:
    assert replicate_reproducibility(*lincs, DOSE_GROUPS) == pytest.approx(0.4583, abs=1e-4)
    assert replicate_reproducibility(*lincs, DOSE_GROUPS, 0.5) == pytest.approx(0.681, abs=1e-3)


def test_moa_groups_match_published_value(lincs) -> None:
    assert replicate_reproducibility(*lincs, ["Metadata_moa"]) == pytest.approx(0.3074, abs=1e-4)
    medians = median_replicate_correlation(*lincs, ["Metadata_moa"])
    assert medians.max() == pytest.approx(0.9357, abs=1e-4)


def test_mean_median_correlation_matches_published_value(lincs) -> None:
    medians = median_replicate_correlation(*lincs, DOSE_GROUPS)
    assert medians.mean() == pytest.approx(0.5407, abs=1e-4)


def test_precision_recall_counts_match_published_values(lincs) -> None:
    ks = [1, 5, 10, 50, 5000]
    table = precision_recall_at_k(*lincs, ["Metadata_broad_sample"], ks)
    assert table["Metadata_broad_sample"].nunique() == 59
    perfect = table.groupby("k")[["precision", "recall"]].agg(lambda x: int((x == 1).sum()))
    assert perfect.loc[ks, "precision"].tolist() == [18, 9, 5, 2, 0]
    assert perfect.loc[ks, "recall"].tolist() == [0, 0, 0, 1, 58]


def test_perfect_replicates_all_pass_and_no_replicates_is_an_error() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 20))
    meta = pd.DataFrame({"g": np.repeat(list("abcde"), 3)})
    feats = np.repeat(centres, 3, axis=0) + 1e-6 * rng.standard_normal((15, 20))
    assert replicate_reproducibility(meta, feats, ["g"]) == 1.0
    with pytest.raises(ValueError, match="no replicate pairs"):
        replicate_reproducibility(meta.iloc[::3], feats[::3], ["g"])
    table = precision_recall_at_k(meta, feats, ["g"], [6, 12])  # 3 x 2 ordered pairs a group
    assert table.loc[table["k"] == 6, ["precision", "recall"]].eq(1.0).all().all()
    assert table.loc[table["k"] == 12, "precision"].eq(0.5).all()
