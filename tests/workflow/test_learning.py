"""Learning is real: a short SSL run beats the same ViT with random weights, over two seeds.

Drives ``benchmarks/bench_learning.py`` (the real workflow) on a CI-sized synthetic dataset:
the full plate layout (2 cell lines x 2 sources x 2 batches x 2 plates, 96 wells, 2 sites) with
112 px sites, and the shipped tiny model entries of ``config/config.yaml`` unchanged.
``random_vits`` is the ViT-S/16 baseline at 112 px tiles (the sites are smaller than 224 px).
"""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO

CI_CONFIG = """\
synthetic: {site_size: 112, sites_per_well: 2}
eval: {null_size: 100}
models:
  random_vits: {img_size: 112}
"""
LEARNING_METHODS = ["simclr"]
"""Methods whose shipped tiny entry beats random weights at full size (see bench_learning)."""
MARGIN = 0.03
"""Least gain in perturbation mAP over each random-weight baseline, at every seed."""


@pytest.mark.slow
def test_trained_tiny_models_beat_random_weights_over_two_seeds(tmp_path: Path) -> None:
    config = tmp_path / "ci.yaml"
    config.write_text(CI_CONFIG)
    out = tmp_path / "learning.tsv"
    cmd = [
        sys.executable, str(REPO / "benchmarks/bench_learning.py"),
        "--workdir", str(tmp_path / "runs"), "--seeds", "0", "1",
        "--methods", *LEARNING_METHODS, "--configfile", str(config), "--out", str(out),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    table = pd.read_csv(out, sep="\t")
    assert sorted(table["seed"].unique()) == [0, 1]
    assert set(table["method"]) == set(LEARNING_METHODS)
    for baseline in ("random_tiny", "random_vits"):
        gain = table["perturbation_map"] - table[f"perturbation_map_{baseline}"]
        assert (gain >= MARGIN).all(), f"no clear gain over {baseline}:\n{table.to_string()}"
