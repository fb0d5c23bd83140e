"""Model comparison: side-by-side table and Wilcoxon tests against the best baseline."""

from pathlib import Path

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
    compare_models(tables, aps, summary, tests, baselines=["noisy"])
    wide = pd.read_csv(summary, sep="\t")
    row = wide.query("metric == 'perturbation_map' and variant == 'observed'")
    assert (row["good"] > row["noisy"]).all()
    wilcoxon = pd.read_csv(tests, sep="\t").query("metric == 'perturbation_map'")
    assert set(wilcoxon["reference"]) == {"noisy"}
    assert (wilcoxon["n_pairs"] == 24).all()
    assert (wilcoxon["median_difference"] > 0).all()
    assert (wilcoxon["p_value"] < 0.01).all()
    with pytest.raises(ValueError, match="not evaluated models"):
        compare_models(tables, aps, summary, tests, baselines=["cellprofiler"])
