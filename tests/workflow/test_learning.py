"""Learning is real: a short SSL run beats the ViT-S/16 with random weights, over two seeds.

Drives ``bench/bench_learning.py`` (the real workflow) on a CI-sized synthetic dataset:
2 cell lines x 2 sources x 2 batches x 1 plate of 96 wells, 2 sites of 112 px, and the shipped
tiny model entries of ``config/config.yaml`` unchanged. ``random_vits`` is the ViT-S/16
baseline at 112 px tiles (the sites are smaller than 224 px); ``random_tiny`` is the tiny
architecture with random weights.
"""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO

CI_CONFIG = """\
synthetic: {site_size: 112, sites_per_well: 2, plates_per_batch: 1, eval_plates_per_batch: 0}
eval: {null_size: 100}
models:
  random_vits: {img_size: 112}
"""
PERTURBATION_GAIN = {"dino": 0.02, "mae": 0.015, "simclr": 0.05}
"""Least gain in perturbation mAP over random_vits (about 0.13 here) at every seed."""
TARGET_GAIN = 0.015
"""Least gain in target mAP over random_vits (about 0.52 here) at every seed, every method."""
SIMCLR_GAIN_OVER_RANDOM_TINY = 0.03
"""SimCLR also beats its own architecture with random weights (DINO and MAE: by less)."""


@pytest.mark.slow
def test_trained_tiny_models_beat_random_weights_over_two_seeds(tmp_path: Path) -> None:
    config = tmp_path / "ci.yaml"
    config.write_text(CI_CONFIG)
    out = tmp_path / "learning.tsv"
    cmd = [
        sys.executable, str(REPO / "bench/bench_learning.py"),
        "--workdir", str(tmp_path / "runs"), "--seeds", "0", "1",
        "--methods", *PERTURBATION_GAIN, "--configfile", str(config), "--out", str(out),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    table = pd.read_csv(out, sep="\t")
    assert sorted(table["seed"].unique()) == [0, 1]
    assert set(table["method"]) == set(PERTURBATION_GAIN)
    shown = table.to_string()
    for method, margin in PERTURBATION_GAIN.items():
        runs = table[table["method"] == method]
        gain = runs["perturbation_map"] - runs["perturbation_map_random_vits"]
        assert (gain >= margin).all(), f"{method}: perturbation mAP gain < {margin}:\n{shown}"
    gain = table["target_map"] - table["target_map_random_vits"]
    assert (gain >= TARGET_GAIN).all(), f"target mAP gain < {TARGET_GAIN}:\n{shown}"
    simclr = table[table["method"] == "simclr"]
    gain = simclr["perturbation_map"] - simclr["perturbation_map_random_tiny"]
    assert (gain >= SIMCLR_GAIN_OVER_RANDOM_TINY).all(), f"simclr vs random_tiny:\n{shown}"
