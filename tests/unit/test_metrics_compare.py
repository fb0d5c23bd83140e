"""Model comparison: side-by-side table and Wilcoxon tests against the best baseline."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paintssl.evaluate.compare import compare_models
from paintssl.evaluate.model import EvalConfig, evaluate_model
from tests.planted import PlantedDesign, write_planted_profiles


def test_compare_good_model_with_noisy_baseline(tmp_path: Path) -> None:
    designs = {"good": PlantedDesign(), "noisy": PlantedDesign(perturbation_effect=0.3)}
    tables, aps = {}, {}
    for model, design in designs.items():
        paths = write_planted_profiles(design, tmp_path / model, seed=0)
        paths.pop("well")
        tables[model], aps[model] = tmp_path / f"{model}.tsv", tmp_path / f"{model}.parquet"
        evaluate_model(paths, tables[model], EvalConfig(null_size=100), ap_out=aps[model])
    summary, tests = tmp_path / "summary.tsv", tmp_path / "wilcoxon.tsv"
    comparison = tmp_path / "comparison.tsv"
    compare_models(tables, aps, summary, tests, comparison, ["noisy"], reference="noisy")
    wide = pd.read_csv(summary, sep="\t")
    row = wide.query("metric == 'perturbation_map' and variant == 'observed'")
    assert (row["good"] > row["noisy"]).all()
    wilcoxon = pd.read_csv(tests, sep="\t").query("metric == 'perturbation_map'")
    assert set(wilcoxon["reference"]) == {"noisy"}
    assert (wilcoxon["n_pairs"] == 24).all()
    assert (wilcoxon["median_difference"] > 0).all()
    assert (wilcoxon["p_value"] < 0.01).all()
    paper = pd.read_csv(comparison, sep="\t").set_index(["metric", "setting"])
    assert set(paper["model"]) == {"good"}
    assert set(paper.index.get_level_values("metric")) == {
        "perturbation_map",
        "target_map",
        "cross_source_map",
        "gene_family_ami",
        "nsb_accuracy",
    }
    assert paper.loc["nsb_accuracy", "value"].isna().all()  # no well-level profiles here
    batch = paper.loc["perturbation_map"]
    expected = 100 * (batch["value"] - batch["reference_value"]) / batch["reference_value"].abs()
    assert np.allclose(batch["relative_change_percent"], expected)
    assert (batch["relative_change_percent"] > 0).all()
    wilcoxon_p = wilcoxon.set_index("setting")["p_value"]
    assert np.allclose(batch["wilcoxon_p_value"], wilcoxon_p.loc[batch.index])
    assert paper.loc["gene_family_ami", "wilcoxon_p_value"].isna().all()
    with pytest.raises(ValueError, match="not evaluated models"):
        compare_models(tables, aps, summary, tests, comparison, baselines=["cellprofiler"])


def test_missing_reference_falls_back_to_the_best_baseline(tmp_path: Path) -> None:
    tables, aps = {}, {}
    for model, effect in {"a": 1.0, "b": 0.3}.items():
        paths = write_planted_profiles(PlantedDesign(perturbation_effect=effect), tmp_path / model)
        tables[model], aps[model] = tmp_path / f"{model}.tsv", tmp_path / f"{model}.parquet"
        evaluate_model({"batch": paths["batch"]}, tables[model], EvalConfig(null_size=100),
                       ap_out=aps[model])  # fmt: skip
    out = [tmp_path / f"{name}.tsv" for name in ("summary", "wilcoxon", "comparison")]
    compare_models(tables, aps, *out, baselines=["b"], reference="cellprofiler")
    paper = pd.read_csv(out[2], sep="\t")
    assert set(paper["reference"]) == {"b"}
    assert set(paper["model"]) == {"a"}
