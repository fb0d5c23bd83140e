"""Cell-line transferability (CVDD-CVPR25 protocol): plate folds, kNN, rows and chance levels."""

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier

from paintssl.evaluate.transfer import (
    METRICS,
    fold_splits,
    knn_predict,
    plate_folds,
    scored_wells,
    setting_folds,
    transfer_predictions,
    transfer_rows,
    transfer_scores,
)
from paintssl.tables import CELL_LINE, PERT_TYPE, PERTURBATION, PLATE, split_features

DMSO = "DMSO"
EFFECT, NOISE, SHIFT = 5.0, 0.3, 2.0
# Separable: a well's dot product with a training well of its compound is ~EFFECT**2 = 25,
# with any other ~0 (the cell-line shifts are orthogonal); the noise moves a dot product by
# about EFFECT * NOISE * sqrt(2) ~ 2, so the nearest training well is of the query's compound
# with margin > 10 sd: accuracy is exactly 1.


def planted(
    plates: dict[str, int],
    n_compounds: int = 8,
    reps: int = 5,
    n_dmso: int = 4,
    seed: int = 0,
    dmso_centroids: bool = False,
) -> pd.DataFrame:
    """Wells: per plate ``reps`` of every compound and ``n_dmso`` DMSO wells.

    Features: ``EFFECT`` x one-hot compound + a cell-line shift (its own dimension, norm
    ``SHIFT``) + Gaussian noise. ``dmso_centroids``: DMSO wells sit exactly on the
    compounds' noise-free centres, so they would be every query's nearest neighbour.
    """
    rng = np.random.default_rng(seed)
    lines = sorted(plates)
    dim = n_compounds + len(lines)
    rows, feats = [], []
    for li, line in enumerate(lines):
        shift = np.zeros(dim)
        shift[n_compounds + li] = SHIFT
        for p in range(plates[line]):
            for c in range(n_compounds):
                for _ in range(reps):
                    rows.append((line, f"{line}_P{p}", f"C{c}", "trt"))
                    centre = np.eye(dim)[c] * EFFECT + shift
                    feats.append(centre + NOISE * rng.standard_normal(dim))
            for d in range(n_dmso):
                rows.append((line, f"{line}_P{p}", DMSO, "negcon"))
                centre = np.eye(dim)[d % n_compounds] * EFFECT + shift
                feats.append(centre if dmso_centroids else NOISE * rng.standard_normal(dim))
    meta = pd.DataFrame(rows, columns=[CELL_LINE, PLATE, PERTURBATION, PERT_TYPE])
    features = pd.DataFrame(np.array(feats), columns=[f"f_{j:03d}" for j in range(dim)])
    return pd.concat([meta, features], axis=1)


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).set_index(["metric", "setting", "variant"])


def binomial_band(p: float, n: int) -> float:
    """4 binomial standard errors: a chance-level accuracy of n queries lies within it."""
    return 4 * np.sqrt(p * (1 - p) / n)


def test_plate_folds_are_balanced_seeded_and_cover_every_plate() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):  # random layouts
        n_plates = int(rng.integers(2, 30))
        n_folds = int(rng.integers(1, n_plates + 1))
        plates = [f"P{i}" for i in rng.permutation(n_plates)]
        seed = int(rng.integers(1000))
        folds = plate_folds(plates, n_folds, seed)
        assert set(folds) == set(plates)
        sizes = np.bincount(list(folds.values()), minlength=n_folds)
        assert len(sizes) == n_folds
        assert sizes.max() - sizes.min() <= 1
        assert sizes.min() >= 1
        assert plate_folds(sorted(plates) * 2, n_folds, seed) == folds  # order, duplicates
    with pytest.raises(ValueError, match="n_folds"):
        plate_folds(["a", "b"], 3, 0)


def test_no_plate_is_in_training_and_test_and_test_folds_partition_the_target() -> None:
    rng = np.random.default_rng(1)
    for trial in range(30):  # random layouts: plates per line, wells per plate, compounds
        plates = {"A549": int(rng.integers(1, 7)), "U2OS": int(rng.integers(1, 7))}
        wells = planted(plates, n_compounds=int(rng.integers(2, 5)), reps=1, n_dmso=2, seed=trial)
        wells = wells.sample(frac=0.8, random_state=trial).reset_index(drop=True)
        meta, _ = split_features(wells)
        scored = scored_wells(meta)
        for source in plates:
            for target in plates:
                n_folds = setting_folds(meta, source, target, int(rng.integers(2, 6)))
                if n_folds < 1:
                    continue
                splits = fold_splits(meta, source, target, n_folds, seed=trial)
                tests = np.concatenate([test for _, test in splits])
                target_rows = np.flatnonzero(scored & (meta[CELL_LINE] == target).to_numpy())
                assert sorted(tests) == list(target_rows)  # each target well tested once
                for train, test in splits:
                    train_plates, test_plates = set(meta[PLATE][train]), set(meta[PLATE][test])
                    assert not train_plates & test_plates
                    assert set(meta[CELL_LINE][train]) <= {source}
                    assert scored[train].all()
                    assert scored[test].all()


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 500])
def test_knn_equals_sklearn_cosine_knn(k: int) -> None:
    rng = np.random.default_rng(k)
    train, test = rng.standard_normal((120, 6)), rng.standard_normal((80, 6))
    labels = np.array([f"c{i}" for i in rng.integers(0, 5, len(train))])  # tied votes occur
    ours = knn_predict(train, labels, test, k)
    reference = KNeighborsClassifier(n_neighbors=min(k, len(train)), metric="cosine")
    reference.fit(train, labels)
    assert list(ours) == list(reference.predict(test))


def test_macro_f1_averages_the_compounds_present_in_the_test_wells() -> None:
    # b is predicted but never true: no class of its own (sklearn's default would give 1/3)
    accuracy, f1 = transfer_scores(np.array(["a", "a"]), np.array(["a", "b"]))
    assert accuracy == 0.5
    assert f1 == pytest.approx(2 / 3)


def test_four_settings_separable_data_is_classified_and_chance_is_chance() -> None:
    n_compounds = 8
    wells = planted({"U2OS": 6, "A549": 6}, n_compounds=n_compounds)
    rows = table(transfer_rows(wells, k=1, n_folds=5, seed=0))
    settings = {"U2OS->U2OS", "U2OS->A549", "A549->U2OS", "A549->A549"}
    assert set(rows.index.get_level_values("setting")) == settings
    assert set(rows.index.get_level_values("metric")) == set(METRICS)
    n = 6 * n_compounds * 5  # every target well is tested once; DMSO never
    chance = 1 / n_compounds
    for setting in settings:
        for metric in METRICS:
            observed = rows.loc[(metric, setting, "observed")]
            assert observed["value"] == 1.0
            assert observed["n_queries"] == n
            assert observed["n_groups"] == n_compounds
            assert observed["note"].startswith("5 plate folds; k=1")
        for variant in ("random_features", "shuffled_labels"):
            accuracy = rows.loc[("transfer_accuracy", setting, variant), "value"]
            assert abs(accuracy - chance) <= binomial_band(chance, n), (setting, variant)


def test_dmso_is_never_a_query_nor_a_neighbour() -> None:
    # DMSO wells on the compounds' exact centres: as neighbours they would win every vote
    wells = planted({"U2OS": 3, "A549": 3}, n_dmso=8, dmso_centroids=True)
    meta, feats = split_features(wells)
    for source, target in [("U2OS", "U2OS"), ("U2OS", "A549")]:
        truth, predicted, unseen = transfer_predictions(meta, feats, source, target, 3, k=3)
        assert DMSO not in set(truth) | set(predicted)
        assert len(truth) == 3 * 8 * 5
        assert unseen == 0
        assert (truth == predicted).all()


def test_compounds_absent_from_training_are_scored_as_errors_and_counted() -> None:
    wells = planted({"U2OS": 4, "A549": 4})
    extra = wells[wells[PLATE] == "U2OS_P0"].iloc[:3].assign(**{PERTURBATION: "ONLY_HERE"})
    features = [c for c in wells if c.startswith("f_")]
    extra[features] = -extra[features]  # opposite to every compound: nobody's neighbour
    wells = pd.concat([wells, extra], ignore_index=True)
    rows = table(transfer_rows(wells, k=1, n_folds=4))
    n = 4 * 8 * 5 + 3
    observed = rows.loc[("transfer_accuracy", "U2OS->U2OS", "observed")]
    assert observed["n_queries"] == n
    assert observed["value"] == pytest.approx(1 - 3 / n)
    assert "3 test wells of compounds absent from training" in observed["note"]
    assert "0 test wells" in rows.loc[("transfer_accuracy", "U2OS->A549", "observed"), "note"]


def test_fewer_plates_than_folds_and_a_single_plate() -> None:
    rows = table(transfer_rows(planted({"U2OS": 3, "A549": 4}), n_folds=5))
    assert rows.loc[("transfer_accuracy", "A549->A549", "observed"), "note"].startswith(
        "4 plate folds (5 asked; plates: A549 4)"
    )
    assert rows.loc[("transfer_accuracy", "U2OS->A549", "observed"), "note"].startswith(
        "3 plate folds (5 asked; plates: U2OS 3, A549 4)"
    )
    rows = table(transfer_rows(planted({"U2OS": 3, "A549": 1}), n_folds=5))
    for setting in ("A549->A549", "A549->U2OS", "U2OS->A549"):
        nan = rows.xs(setting, level="setting")
        assert nan["value"].isna().all()
        assert (nan["n_queries"] == 0).all()
        assert nan["note"].str.startswith("A549 has 1 plate(s) with scored wells").all()
    assert (rows.xs("U2OS->U2OS", level="setting").loc["transfer_accuracy", "value"] > 0).all()


def test_one_cell_line_has_only_its_own_setting() -> None:
    rows = table(transfer_rows(planted({"U2OS": 3})))
    assert set(rows.index.get_level_values("setting")) == {"U2OS->U2OS"}
    assert len(rows) == len(METRICS) * 3  # observed and the two chance levels
