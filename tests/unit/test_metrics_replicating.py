"""Replicate reproducibility against cytominer-eval's published numbers on its LINCS plate."""

import numpy as np
import pandas as pd
import pytest

from paintssl.evaluate.replicating import median_replicate_correlation, replicate_reproducibility
from tests.paths import SHARED_DATA, require_shared

LINCS_PLATE = SHARED_DATA / "cytominer-eval-lincs" / "SQ00015054_normalized_feature_select.csv.gz"
DOSE_GROUPS = ["Metadata_broad_sample", "Metadata_mg_per_ml"]


@pytest.fixture(scope="module")
def lincs() -> tuple[pd.DataFrame, np.ndarray]:
    require_shared(LINCS_PLATE)
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


def test_perfect_replicates_all_pass_and_no_replicates_is_an_error() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 20))
    meta = pd.DataFrame({"g": np.repeat(list("abcde"), 3)})
    feats = np.repeat(centres, 3, axis=0) + 1e-6 * rng.standard_normal((15, 20))
    assert replicate_reproducibility(meta, feats, ["g"]) == 1.0
    with pytest.raises(ValueError, match="no replicate pairs"):
        replicate_reproducibility(meta.iloc[::3], feats[::3], ["g"])
