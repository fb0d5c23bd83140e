"""Ablation table: each variant's change against the full model; its figure."""

from pathlib import Path

import pandas as pd
import pytest

from paintssl.evaluate.ablation import ablation_table
from paintssl.figures.ablation import plot_ablation


def summary() -> pd.DataFrame:
    rows = [
        ("perturbation_map", "batch", "A549", "observed", 0.40, 0.30, 0.35),
        ("perturbation_map", "batch", "A549", "random_features", 0.03, 0.03, 0.03),
        ("transfer_accuracy", "well", "U2OS->A549", "observed", 0.20, 0.25, 0.10),
        ("nsb_accuracy", "well", "A549", "observed", 0.5, 0.4, 0.3),
    ]
    columns = ["metric", "level", "setting", "variant", "full", "no_cross", "dino"]
    return pd.DataFrame(rows, columns=columns)


def test_changes_are_variant_minus_full_on_observed_rows_of_the_listed_metrics() -> None:
    table = ablation_table(summary(), "full", {"cross_site_views": "no_cross"}, ["dino"])
    assert set(table["metric"]) == {"perturbation_map", "transfer_accuracy"}
    by_model = table.set_index(["metric", "model"])
    assert by_model.loc[("perturbation_map", "no_cross"), "change"] == pytest.approx(-0.10)
    assert by_model.loc[("transfer_accuracy", "no_cross"), "change"] == pytest.approx(0.05)
    assert by_model.loc[("perturbation_map", "dino"), "part_removed"] == "(other model)"
    assert by_model.loc[("perturbation_map", "full"), "change"] == 0.0
    full_values = table["metric"].map({"perturbation_map": 0.40, "transfer_accuracy": 0.20})
    assert (table["full_value"] == full_values).all()


def test_a_model_that_was_not_evaluated_is_named() -> None:
    with pytest.raises(ValueError, match=r"\['no_agg'\] were not evaluated"):
        ablation_table(summary(), "full", {"aggregation_branch": "no_agg"})


def test_figure_is_written(tmp_path: Path) -> None:
    table = ablation_table(summary(), "full", {"cross_site_views": "no_cross"}, ["dino"])
    plot_ablation(table, tmp_path / "a.png", tmp_path / "a.pdf")
    assert (tmp_path / "a.png").stat().st_size > 0
    assert (tmp_path / "a.pdf").stat().st_size > 0
