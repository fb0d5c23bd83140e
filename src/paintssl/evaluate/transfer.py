"""Cell-line transferability: kNN compound classification across plates and cell lines.

The protocol of the CVDD-CVPR25 Cell Line Transferability Challenge (CPJUMP1 compound
plates, U2OS and A549): a kNN classifier on well profiles predicts each well's perturbation
(``Metadata_JCP2022``; on CPJUMP1's compound plates, the compound) in 5-fold
cross-validation with plates split between folds, in every setting train -> test
(U2OS->U2OS, U2OS->A549, A549->U2OS, A549->A549). Negative-control (DMSO) wells are left
out: never queries, never neighbours; every other well with a perturbation is scored.

Decisions (the challenge's page names kNN, 5 plate-wise folds, DMSO omitted and the four
settings; it leaves the rest undisclosed):

- Folds: each cell line's plates (those with scored wells) are shuffled with the seed and
  dealt round-robin into ``n_folds`` folds (:func:`plate_folds`). Fold ``f`` of a setting
  trains on the source line's plates outside fold ``f`` and tests on the target line's
  plates in fold ``f``, so no plate is ever in both, and same-line and cross-line settings
  have one shape. A setting uses ``min(n_folds, plates of either line)`` folds (the row's
  note says so); with fewer than 2 it is NaN, with a note.
- kNN: cosine similarity, ``k`` nearest training wells (default 1), majority vote; a tied
  vote goes to the first compound name in sorted order (scikit-learn's rule).
- Test wells whose compound is not in their training fold cannot be predicted right; they
  are still scored (errors), the stricter choice, and counted in the note. (CPJUMP1's
  compound plates share one plate map, so there the case does not arise.)
- Scores: the predictions of all folds are pooled, then scored: accuracy, and macro-F1
  (scikit-learn) over the compounds present among the test wells.
- Chance: ``random_features`` (Gaussian noise of the features' shape) and
  ``shuffled_labels`` (compounds permuted among the scored wells of each plate, so every
  plate keeps its compounds), through the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from paintssl.evaluate.knn import BLOCK, unit_rows
from paintssl.evaluate.table import VARIANTS, chance_inputs, row
from paintssl.tables import CELL_LINE, PERT_TYPE, PERTURBATION, PLATE, split_features

NEGCON = "negcon"
METRICS = ("transfer_accuracy", "transfer_macro_f1")
MIN_FOLDS = 2
NO_PREDICTION = "<none>"
"""The prediction of a test well whose training fold has no well (always an error)."""


def plate_folds(plates: Iterable[str], n_folds: int, seed: int) -> dict[str, int]:
    """Assign every plate a fold in ``0 .. n_folds - 1``, fold sizes differing by at most 1.

    Parameters
    ----------
    plates
        Plate names (duplicates and order do not matter).
    n_folds
        Number of folds, at least 1 and at most the number of plates (no empty fold).
    seed
        Seed of the shuffle before the round-robin deal.

    Returns
    -------
    dict
        ``{plate: fold}``.
    """
    names = sorted({str(p) for p in plates})
    if not 1 <= n_folds <= len(names):
        raise ValueError(f"n_folds must be in 1..{len(names)} (the plates), got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i]: rank % n_folds for rank, i in enumerate(order)}


def scored_wells(meta: pd.DataFrame) -> np.ndarray:
    """Mark the wells with a perturbation that are not negative controls (DMSO)."""
    control = (meta[PERT_TYPE].astype("string") == NEGCON).fillna(False).to_numpy(dtype=bool)
    return ~control & meta[PERTURBATION].notna().to_numpy()


def line_plates(meta: pd.DataFrame, line: str) -> list[str]:
    """Sorted plates of cell line ``line`` that hold scored wells."""
    part = meta[scored_wells(meta) & (meta[CELL_LINE].astype(str) == line).to_numpy()]
    return sorted(part[PLATE].astype(str).unique())


def setting_folds(meta: pd.DataFrame, source: str, target: str, n_folds: int) -> int:
    """Folds of the setting ``source -> target``: ``n_folds`` capped by either line's plates."""
    return min(n_folds, len(line_plates(meta, source)), len(line_plates(meta, target)))


def fold_splits(
    meta: pd.DataFrame, source: str, target: str, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, test rows) of every fold of ``source -> target`` (row positions).

    ``n_folds`` is the setting's number of folds (:func:`setting_folds`). Training rows
    are the scored wells of the source line's plates outside the fold, test rows those of
    the target line's plates in the fold; each line's plates get :func:`plate_folds`.
    """
    scored = scored_wells(meta)
    plates = meta[PLATE].astype(str).to_numpy()
    lines = meta[CELL_LINE].astype(str).to_numpy()
    folds = {}
    for line in {source, target}:
        assigned = plate_folds(line_plates(meta, line), n_folds, seed)
        folds[line] = np.array([assigned.get(p, -1) for p in plates])
    splits = []
    for fold in range(n_folds):
        train = scored & (lines == source) & (folds[source] != fold)
        test = scored & (lines == target) & (folds[target] == fold)
        splits.append((np.flatnonzero(train), np.flatnonzero(test)))
    return splits


def knn_predict(
    train: np.ndarray, labels: np.ndarray | pd.Series, test: np.ndarray, k: int = 1
) -> np.ndarray:
    """Label of every test row by majority vote of its ``k`` nearest training rows (cosine).

    A tied vote goes to the first label in sorted order, as scikit-learn's
    ``KNeighborsClassifier(metric="cosine")``; ``k`` is capped at the training rows. With
    no training row every prediction is ``NO_PREDICTION``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not len(train):
        return np.full(len(test), NO_PREDICTION, dtype=object)
    classes, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    k = min(k, len(train))
    train_unit, test_unit = unit_rows(train), unit_rows(test)
    out = np.empty(len(test), dtype=np.int64)
    for start in range(0, len(test), BLOCK):
        sims = test_unit[start : start + BLOCK] @ train_unit.T
        if k == 1:
            out[start : start + len(sims)] = codes[sims.argmax(axis=1)]
            continue
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(sims), len(classes)), dtype=np.int64)
        np.add.at(votes, (np.arange(len(sims))[:, None], codes[nearest]), 1)
        out[start : start + len(sims)] = votes.argmax(axis=1)
    return classes[out].astype(object)


def transfer_predictions(
    meta: pd.DataFrame,
    feats: np.ndarray,
    source: str,
    target: str,
    n_folds: int,
    k: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pooled (true, predicted) compounds of the target's test wells over all folds.

    Parameters
    ----------
    meta, feats
        Well metadata (cell line, plate, perturbation, pert type) and features, row-aligned.
    source, target
        Cell lines trained on and tested on.
    n_folds
        The setting's number of folds (:func:`setting_folds`, at least 1).
    k, seed
        Neighbours voting, and the seed of the plate folds.

    Returns
    -------
    tuple
        True labels, predictions (one per scored target well, fold by fold) and the number
        of test wells whose compound is absent from their training fold (all errors).
    """
    labels = meta[PERTURBATION].astype(str).to_numpy()
    truth, predicted, unseen = [], [], 0
    for train, test in fold_splits(meta, source, target, n_folds, seed):
        truth.append(labels[test])
        predicted.append(knn_predict(feats[train], labels[train], feats[test], k))
        unseen += int((~np.isin(labels[test], labels[train])).sum())
    return np.concatenate(truth), np.concatenate(predicted), unseen


def transfer_scores(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Accuracy and macro-F1 (over the labels in ``truth``); NaN for no test well."""
    if not len(truth):
        return np.nan, np.nan
    present = np.unique(truth)
    f1 = f1_score(truth, predicted, labels=present, average="macro", zero_division=0)
    return float(np.mean(truth == predicted)), float(f1)


def shuffled_within_plates(meta: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``meta`` (index 0..n-1) with the perturbations permuted among each plate's scored wells."""
    rng = np.random.default_rng(seed)
    labels = meta[PERTURBATION].to_numpy().copy()
    scored = scored_wells(meta)
    for rows in meta.groupby(PLATE, sort=True).indices.values():
        rows = rows[scored[rows]]
        labels[rows] = labels[rows[rng.permutation(len(rows))]]
    return meta.assign(**{PERTURBATION: labels})


def fold_note(meta: pd.DataFrame, source: str, target: str, n_folds: int, k: int) -> str:
    """How the setting's folds were made (or why it has none)."""
    counts = {line: len(line_plates(meta, line)) for line in (source, target)}
    folds = min(n_folds, *counts.values())
    if folds < MIN_FOLDS:
        few = [f"{line} has {n} plate(s)" for line, n in counts.items() if n < MIN_FOLDS]
        return f"{', '.join(few)} with scored wells: plate-split cross-validation needs >= 2"
    plates = ", ".join(f"{line} {n}" for line, n in counts.items())
    capped = f" ({n_folds} asked; plates: {plates})" if folds < n_folds else ""
    return f"{folds} plate folds{capped}; k={k} cosine kNN; scored on the pooled folds"


def transfer_rows(wells: pd.DataFrame, k: int = 1, n_folds: int = 5, seed: int = 0) -> list[dict]:
    """Transfer accuracy and macro-F1 of every setting train -> test, with chance levels.

    Parameters
    ----------
    wells
        Well-level profiles with ``Metadata_cell_line``, ``Metadata_Plate``,
        ``Metadata_JCP2022`` and ``Metadata_pert_type``.
    k, n_folds, seed
        Neighbours voting, folds asked for, and the seed of the folds, the random features
        and the label shuffles.

    Returns
    -------
    list of dict
        Rows of the evaluation table (metrics ``transfer_accuracy``, ``transfer_macro_f1``;
        level ``well``; setting ``SOURCE->TARGET`` for every ordered pair of cell lines;
        every variant). ``n_queries`` is the test wells scored, ``n_groups`` their compounds.
    """
    if PLATE not in wells:
        note = f"no column {PLATE}"
        return [row(m, "well", "all", v, n_queries=0, note=note) for m in METRICS for v in VARIANTS]
    meta, feats = split_features(wells)
    noise, _ = chance_inputs(meta, feats, seed)
    runs = {
        "observed": (meta, feats),
        "random_features": (meta, noise),
        "shuffled_labels": (shuffled_within_plates(meta, seed), feats),
    }
    lines = sorted(meta[CELL_LINE].astype(str).unique())
    rows = []
    for source in lines:
        for target in lines:
            setting = f"{source}->{target}"
            folds = setting_folds(meta, source, target, n_folds)
            note = fold_note(meta, source, target, n_folds, k)
            for variant, (var_meta, var_feats) in runs.items():
                values: dict = {"n_queries": 0, "note": note}
                if folds >= MIN_FOLDS:
                    truth, predicted, unseen = transfer_predictions(
                        var_meta, var_feats, source, target, folds, k, seed
                    )
                    values["n_queries"] = len(truth)
                    values["n_groups"] = len(np.unique(truth))
                    values["note"] = (
                        f"{note}; {unseen} test wells of compounds absent from training "
                        "(scored as errors)"
                    )
                    scores = transfer_scores(truth, predicted)
                else:
                    scores = (np.nan, np.nan)
                for metric, value in zip(METRICS, scores, strict=True):
                    rows.append(row(metric, "well", setting, variant, value=value, **values))
    return rows
