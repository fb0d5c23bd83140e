"""Learning is real: each short SSL run beats its own architecture with random weights.

Drives ``bench/bench_learning.py`` (the real workflow) over two seeds on a CI-sized synthetic
dataset: 2 cell lines x 2 sources x 2 batches x 2 plates of 96 wells, 2 sites of 112 px, one
plate per batch held out. Pretraining sees the 8 ``train`` plates, every score is of the 8
``eval`` plates. The shipped tiny model entries of ``config/config.yaml`` are used unchanged.
Each trained tiny model is compared with ``random_tiny`` (the same tiny ViT with random
weights: the claim a user cares about) on perturbation mAP, SimCLR on target mAP too;
``random_vits`` (the ViT-S/16 with random weights at 112 px tiles), ``random_features``
(chance) and ``oracle`` (ground truth) are in the table.
"""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO

CI_CONFIG = """\
synthetic: {site_size: 112, sites_per_well: 2, plates_per_batch: 2, eval_plates_per_batch: 1}
eval: {null_size: 100}
models:
  random_vits: {img_size: 112}
"""
METHODS = ("dino", "mae", "simclr")
PERTURBATION_GAIN = {"dino": 0.008, "mae": 0.012, "simclr": 0.05}
"""Least perturbation-mAP gain over random_tiny at every seed; measured at seeds 0 / 1:
DINO +0.011 / +0.012, MAE +0.016 / +0.021, SimCLR +0.065 / +0.076 (random_tiny 0.129)."""
TARGET_GAIN_OVER_RANDOM_TINY = {"simclr": 0.035}
"""Least target-mAP gain over random_tiny; measured SimCLR +0.070 / +0.050. DINO (-0.002 /
-0.008) and MAE (-0.013 / -0.041) do not beat random_tiny on target mAP on this data (they
do on the demo data): an open finding of issue 8, so only their gain over random_vits is
asserted."""
TARGET_GAIN_OVER_RANDOM_VITS = 0.015
"""Least target-mAP gain over random_vits, every method and seed (measured at least +0.026)."""


@pytest.mark.slow
def test_trained_tiny_models_beat_the_same_network_with_random_weights(tmp_path: Path) -> None:
    config = tmp_path / "ci.yaml"
    config.write_text(CI_CONFIG)
    out = tmp_path / "learning.tsv"
    cmd = [
        sys.executable, str(REPO / "bench/bench_learning.py"),
        "--workdir", str(tmp_path / "runs"), "--seeds", "0", "1",
        "--methods", *METHODS, "--configfile", str(config), "--out", str(out),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    table = pd.read_csv(out, sep="\t")
    assert sorted(table["seed"].unique()) == [0, 1]
    assert set(table["method"]) == set(METHODS)
    shown = table.to_string()
    for method, margin in PERTURBATION_GAIN.items():
        runs = table[table["method"] == method]
        gain = runs["perturbation_map"] - runs["perturbation_map_random_tiny"]
        assert (gain >= margin).all(), f"{method}: perturbation mAP gain < {margin}:\n{shown}"
    for method, margin in TARGET_GAIN_OVER_RANDOM_TINY.items():
        runs = table[table["method"] == method]
        gain = runs["target_map"] - runs["target_map_random_tiny"]
        assert (gain >= margin).all(), f"{method}: target mAP gain < {margin}:\n{shown}"
    gain = table["target_map"] - table["target_map_random_vits"]
    assert (gain >= TARGET_GAIN_OVER_RANDOM_VITS).all(), f"target mAP vs random_vits:\n{shown}"
    for metric in ("perturbation_map", "target_map"):  # chance < random weights < ... < ceiling
        assert (table[f"{metric}_random_features"] < table[f"{metric}_random_tiny"]).all(), shown
        assert (table[metric] < table[f"{metric}_oracle"]).all(), shown
