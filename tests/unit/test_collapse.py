"""Collapse guard: the monitors, the verdict over a log, and a run built to collapse."""

import logging
import math
from pathlib import Path

import pytest
import torch

from paintssl.figures.training import plot_training_curves
from paintssl.pretrain.backbones import create_backbone
from paintssl.pretrain.collapse import CollapseConfig, CollapseError, first_collapse
from paintssl.pretrain.objectives import build_objective
from paintssl.pretrain.objectives.dino import teacher_stats
from paintssl.pretrain.optim import TrainConfig
from paintssl.pretrain.trainer import train

from .test_train import MemoryViews

COLLAPSING_DINO = {
    "out_dim": 16,
    "hidden_dim": 16,
    "bottleneck_dim": 8,
    "local_crops": 0,
    # no sharpening (teacher temperature = student temperature) and no centering (the centre
    # never moves from 0): DINO's two collapse guards off, so every crop soon gets one output
    "teacher_temp": 0.1,
    "warmup_teacher_temp": 0.1,
    "student_temp": 0.1,
    "center_momentum": 1.0,
    "momentum_teacher": 0.9,
}


def test_teacher_information_is_zero_for_identical_outputs_and_high_for_distinct_ones() -> None:
    center = torch.zeros(1, 8)
    same = teacher_stats(torch.randn(1, 8).repeat(6, 1), center, 0.1)
    assert float(same["teacher_information_norm"]) == pytest.approx(0.0, abs=1e-6)
    distinct = teacher_stats(torch.eye(8) * 10, center, 0.1)  # each crop its own prototype
    assert float(distinct["teacher_information_norm"]) > 0.95
    entropy, kl = float(distinct["teacher_entropy"]), float(distinct["teacher_kl_uniform"])
    assert float(distinct["teacher_information_norm"]) == pytest.approx(
        (math.log(8) - kl - entropy) / math.log(8), rel=1e-5
    )


def test_verdict_needs_the_signature_for_patience_consecutive_steps() -> None:
    config = CollapseConfig(patience=3)
    low, high = {"teacher_information_norm": 0.001}, {"teacher_information_norm": 0.3}
    records = [{"step": s, **r} for s, r in enumerate([high, low, low, high, low, low, low], 1)]
    found = first_collapse(records, config)
    assert (found.metric, found.step) == ("teacher_information_norm", 7)
    assert first_collapse(records[:6], config) is None
    spread = [{"step": s, "embedding_std": 0.01} for s in range(1, 4)]
    assert first_collapse(spread, config).describe("m").startswith("m collapsed at step 3")
    with pytest.raises(TypeError, match="patiance"):
        CollapseConfig.from_value({"patiance": 3})
    with pytest.raises(ValueError, match="policy"):
        CollapseConfig(policy="ignore")


def collapsing_run(tmp_path: Path, policy: str) -> Path:
    torch.manual_seed(0)
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8)
    objective = build_objective("dino", backbone, COLLAPSING_DINO)
    cfg = TrainConfig(
        steps=16, batch_size=4, warmup_epochs=0, lr=0.01, collapse={"policy": policy, "patience": 3}
    )
    data = MemoryViews(objective.view_transform(), n=8)
    train(objective, data, cfg, tmp_path / "c.pt", tmp_path / "m.jsonl", name="dino_broken")
    return tmp_path / "m.jsonl"


def test_a_run_built_to_collapse_stops_naming_model_step_and_metric(tmp_path: Path) -> None:
    with pytest.raises(CollapseError, match=r"dino_broken collapsed at step \d+: teacher_info"):
        collapsing_run(tmp_path, "error")


def test_policy_warn_logs_once_and_trains_to_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="paintssl.pretrain.collapse"):
        metrics = collapsing_run(tmp_path, "warn")
    warnings = [r for r in caplog.records if "collapsed at step" in r.message]
    assert len(warnings) == 1
    assert len(metrics.read_text().splitlines()) == 16


def test_the_figure_names_the_collapse(tmp_path: Path) -> None:
    metrics = collapsing_run(tmp_path, "warn")
    config = CollapseConfig(patience=3)  # the run's train.collapse
    verdict = plot_training_curves(
        metrics, tmp_path / "c.png", tmp_path / "c.pdf", config, "dino_x"
    )
    assert verdict.startswith("COLLAPSE: dino_x collapsed at step")
    assert "teacher_information_norm" in verdict
