"""Trainer: schedules, parameter groups, kill-and-resume, metrics, and the pretrain entry point."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml
from torch.utils.data import Dataset

from paintssl.figures.training import plot_training_curves
from paintssl.pretrain.__main__ import main
from paintssl.pretrain.backbones import create_backbone, load_exported
from paintssl.pretrain.objectives import OBJECTIVES, build_objective
from paintssl.pretrain.optim import (
    TrainConfig,
    clip_gradients,
    cosine_schedule,
    param_groups,
    resolve,
)
from paintssl.pretrain.preemption import PREEMPTED_EXIT_CODE, Preempted
from paintssl.pretrain.run import ModelConfig, pretrain
from paintssl.pretrain.trainer import train
from paintssl.tables import CHANNELS, PLATE, WELL

TINY = {
    "dino": {
        "out_dim": 8,
        "hidden_dim": 8,
        "bottleneck_dim": 8,
        "local_crops": 2,
        "local_crop_size": 16,
    },
    "mae": {"decoder_dim": 8, "decoder_depth": 1, "decoder_heads": 2, "crops": 2},
    "simclr": {"proj_dim": 8, "proj_hidden_dim": 8},
}
TINY["sslprofiler"] = {**TINY["dino"], "ibot_weight": 1.0, "koleo_weight": 0.1}


class MemoryViews(Dataset):
    """In-memory stand-in for SiteViews (or WellViews, with ``sites_per_well``: item i is
    images i, i + 1, ...); raises once ``fail_after`` items were served."""

    def __init__(self, transform, n: int = 6, fail_after: int | None = None, nan: bool = False,
                 sites_per_well: int | None = None):  # fmt: skip
        self.images = torch.rand(n, 5, 40, 40, generator=torch.Generator().manual_seed(0))
        self.transform, self.fail_after, self.nan, self.served = transform, fail_after, nan, 0
        self.sites_per_well = sites_per_well

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> list[torch.Tensor]:
        if self.fail_after is not None and self.served >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.served += 1
        index, seed = key
        gen = torch.Generator().manual_seed(seed)
        rows = [(index + i) % len(self) for i in range(self.sites_per_well or 1)]
        sites = [self.images[i] * (float("nan") if self.nan else 1.0) for i in rows]
        pairs = [(image, image[0] > 0.5) for image in sites]
        if self.sites_per_well is None:
            views = self.transform(*pairs[0], gen)
        else:
            views = self.transform(pairs, gen)
        return [(v - 0.5) / 0.3 for v in views]


def views_of(objective, **kwargs) -> MemoryViews:
    """The in-memory views of ``objective`` (sites, or wells for a well objective)."""
    return MemoryViews(
        objective.view_transform(), sites_per_well=objective.sites_per_well, **kwargs
    )


def tiny_objective(method: str):
    torch.manual_seed(0)
    kwargs = OBJECTIVES[method].backbone_kwargs
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8, **kwargs)
    return build_objective(method, backbone, TINY[method])


def test_cosine_schedule_endpoints_and_length() -> None:
    values = cosine_schedule(1.0, 0.1, total_steps=20, warmup_steps=5)
    assert len(values) == 20
    assert all(type(v) is float for v in values)
    assert values[0] == 0.0
    assert values[5] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(0.1)
    assert np.all(np.diff(values[:6]) > 0)
    assert np.all(np.diff(values[5:]) < 0)
    assert cosine_schedule(0.04, 0.4, 3) == pytest.approx([0.04, 0.22, 0.4])


def test_resolve_scales_lr_and_converts_epochs() -> None:
    defaults = OBJECTIVES["dino"].optim_defaults
    hp = resolve(TrainConfig(epochs=10, batch_size=64), defaults, n_items=640)
    assert hp.lr == pytest.approx(0.002 * 64 / 128)
    assert hp.total_steps == 100
    assert hp.warmup_steps == 50  # 20 warm-up epochs > 10 epochs: capped at half
    assert (hp.weight_decay, hp.weight_decay_end, hp.clip_grad) == (0.04, 0.4, 3.0)
    hp = resolve(TrainConfig(steps=7, lr=0.1, betas=[0.8, 0.9]), defaults, n_items=640)
    assert (hp.total_steps, hp.lr, hp.betas) == (7, 0.1, (0.8, 0.9))


def test_unknown_train_key_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="warmup_epoch"):
        TrainConfig.from_dict({"warmup_epoch": 3})
    with pytest.raises(ValueError, match="site_cache_mb must be >= 0"):
        TrainConfig(site_cache_mb=-1)


def test_param_groups_as_dino_decay_tokens_and_skip_biases_norms_and_teacher() -> None:
    objective = tiny_objective("dino")

    def split(**kwargs: bool) -> tuple[set[str], set[str]]:
        decay, no_decay = param_groups(objective, **kwargs)
        names = {id(p): n for n, p in objective.named_parameters()}
        return {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in no_decay["params"]}

    decayed, undecayed = split()  # DINO's get_params_groups: only biases and 1-d tensors
    assert {"backbone.blocks.0.attn.qkv.weight", "backbone.cls_token"} <= decayed
    assert "backbone.pos_embed" in decayed
    assert {"backbone.blocks.0.attn.qkv.bias", "backbone.norm.weight"} <= undecayed
    assert not any(n.startswith("teacher") for n in decayed | undecayed)
    trainable = {n for n, p in objective.named_parameters() if p.requires_grad}
    assert decayed | undecayed == trainable
    assert not decayed & undecayed
    assert "head.last_layer_scale" not in trainable  # norm_last_layer: the scale is fixed
    decayed, undecayed = split(decay_tokens=False)
    assert {"backbone.cls_token", "backbone.pos_embed"} <= undecayed


def dino_clip_gradients(params: list[torch.nn.Parameter], clip: float) -> None:
    """facebookresearch/dino utils.clip_gradients, as written there."""
    for p in params:
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def test_gradient_clipping_per_parameter_equals_dinos_and_reports_the_global_norm() -> None:
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.zeros(n)) for n in (3, 5, 7)]
    ref = [torch.nn.Parameter(torch.zeros(n)) for n in (3, 5, 7)]
    for a, b, scale in zip(ours, ref, (10.0, 0.1, 2.0), strict=True):
        a.grad = scale * torch.randn(a.shape)
        b.grad = a.grad.clone()
    norms = torch.stack([p.grad.norm() for p in ours])
    total = clip_gradients(ours, 1.0)
    dino_clip_gradients(ref, 1.0)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(total, norms.norm())
    assert ours[1].grad.norm() == pytest.approx(float(norms[1]))  # under the limit: untouched
    assert ours[0].grad.norm() == pytest.approx(1.0, rel=1e-5)


def test_warmup_and_batch_units() -> None:
    defaults = OBJECTIVES["mae"].optim_defaults
    hp = resolve(TrainConfig(epochs=10), defaults, n_items=2560, crops_per_item=4)
    assert (hp.batch_size, hp.items_per_step) == (1024, 256)  # the paper: 256 sites x 4 crops
    assert hp.lr == pytest.approx(1.5e-4 * 1024 / 256)
    assert hp.total_steps == 100
    with pytest.raises(ValueError, match="multiple of the 4 crops"):
        resolve(TrainConfig(batch_size=30), defaults, n_items=100, crops_per_item=4)
    short = resolve(TrainConfig(steps=300, warmup_fraction=0.1), defaults, 100, 4)
    long = resolve(TrainConfig(epochs=200, warmup_fraction=0.1), defaults, 2560, 4)
    assert (short.warmup_steps, long.warmup_steps) == (30, 200)
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(warmup_epochs=1, warmup_fraction=0.1)


@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_kill_and_resume_matches_uninterrupted_run(method: str, tmp_path: Path) -> None:
    whole = tiny_objective(method)
    sites = 2  # per step; MAE's batch counts crops
    batch = sites * whole.crops_per_item
    cfg = TrainConfig(steps=4, batch_size=batch, ckpt_every=2, warmup_epochs=0.5, seed=5)
    train(
        whole,
        views_of(whole),
        cfg,
        tmp_path / "a.pt",
        tmp_path / "a.jsonl",
    )

    killed = tiny_objective(method)
    data = views_of(killed, fail_after=5)  # dies inside step 3
    with pytest.raises(KeyboardInterrupt):
        train(killed, data, cfg, tmp_path / "b.pt", tmp_path / "b.jsonl")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 2

    resumed = tiny_objective(method)
    train(
        resumed,
        views_of(resumed),
        cfg,
        tmp_path / "b.pt",
        tmp_path / "b.jsonl",
    )
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_metrics_log_has_required_keys(tmp_path: Path) -> None:
    objective = tiny_objective("dino")
    cfg = TrainConfig(steps=2, batch_size=2, warmup_epochs=0)
    train(
        objective,
        MemoryViews(objective.view_transform()),
        cfg,
        tmp_path / "c.pt",
        tmp_path / "m.jsonl",
    )
    record = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[-1])
    required = {
        "step",
        "epoch",
        "loss",
        "lr",
        "wd",
        "embedding_std",
        "teacher_entropy",
        "teacher_kl_uniform",
        "teacher_information_norm",
    }
    assert required <= set(record)
    assert record["step"] == 2
    assert record["epoch"] == pytest.approx(2 * 2 / 6)
    verdict = plot_training_curves(
        tmp_path / "m.jsonl", tmp_path / "curves.png", tmp_path / "curves.pdf", model="dino_x"
    )
    assert verdict.startswith("dino_x: no collapse (teacher_information_norm, embedding_std)")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_non_finite_loss_stops_training(tmp_path: Path) -> None:
    objective = tiny_objective("simclr")
    data = MemoryViews(objective.view_transform(), nan=True)
    with pytest.raises(FloatingPointError, match="at step 0"):
        train(objective, data, TrainConfig(steps=2, batch_size=2), tmp_path / "d.pt")


def test_a_checkpoint_of_another_run_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = TrainConfig(steps=2, batch_size=2, seed=3, warmup_epochs=0)
    first = tiny_objective("simclr")
    train(first, MemoryViews(first.view_transform()), cfg, tmp_path / "e.pt")
    changed = replace(cfg, lr=1e-2)
    retrained = tiny_objective("simclr")
    with caplog.at_level(logging.WARNING):
        train(retrained, MemoryViews(retrained.view_transform()), changed, tmp_path / "e.pt")
    assert "from another run (train.lr: None -> 0.01): starting over" in caplog.text
    fresh = tiny_objective("simclr")
    train(fresh, MemoryViews(fresh.view_transform()), changed, tmp_path / "f.pt")
    for (name, a), b in zip(
        fresh.state_dict().items(), retrained.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert torch.load(tmp_path / "e.pt", weights_only=True)["identity"]["train"]["lr"] == 1e-2


def test_runtime_keys_and_the_same_run_resume_at_the_last_step(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=2, batch_size=2, seed=3, warmup_epochs=0)
    objective = tiny_objective("simclr")
    train(objective, MemoryViews(objective.view_transform()), cfg, tmp_path / "g.pt")
    again = tiny_objective("simclr")
    data = MemoryViews(again.view_transform(), fail_after=0)  # a read would raise
    train(again, data, replace(cfg, log_every=7, num_workers=0), tmp_path / "g.pt")
    for (name, a), b in zip(
        objective.state_dict().items(), again.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def write_manifest(root: Path, n_sites: int = 4, size: int = 40) -> Path:
    """A manifest with random uint16 sites (two per well) and the contract's statistics."""
    rng = np.random.default_rng(0)
    (root / "sites").mkdir(parents=True)
    rows = []
    for i in range(n_sites):
        image = rng.integers(0, 65535, (5, size, size), dtype=np.uint16)
        tifffile.imwrite(root / f"sites/s{i}.tiff", image)
        scaled = image / 65535
        row = {"path": f"sites/s{i}.tiff", "channels": ",".join(CHANNELS), "dna_otsu": 0.5}
        row |= {PLATE: "P1", WELL: f"A{i // 2 + 1:02d}", "height": size, "width": size}
        row |= {f"mean_{c}": float(scaled[k].mean()) for k, c in enumerate(CHANNELS)}
        row |= {f"std_{c}": float(scaled[k].std()) for k, c in enumerate(CHANNELS)}
        rows.append(row)
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    return root / "manifest.parquet"


@pytest.mark.parametrize("method", ["random", "mae"])
def test_pretrain_exports_loadable_weights(method: str, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "images")
    model = {"method": method, "backbone": "vit_tiny_patch16_224", "img_size": 32}
    model["backbone_kwargs"] = {"patch_size": 8}
    if method != "random":
        model |= {"method_params": TINY[method], "train": {"steps": 2, "batch_size": 2}}
    weights = tmp_path / "pretrain" / "weights.pt"
    pretrain(manifests=[manifest], weights=weights, model=ModelConfig(**model))
    state = torch.load(weights, weights_only=True)
    assert state["channels"] == list(CHANNELS)
    exported = load_exported(weights)
    assert exported.model(torch.randn(1, 5, 32, 32)).shape == (1, 192)
    if method == "mae":
        assert state["backbone_kwargs"] == {"patch_size": 8, "global_pool": "avg", "fc_norm": False}
        assert (tmp_path / "pretrain" / "ckpt" / "last.pt").exists()
        assert (tmp_path / "pretrain" / "metrics.jsonl").exists()


def test_cli_runs_pretrain_from_yaml(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "images")
    model = {"method": "simclr", "backbone": "vit_tiny_patch16_224", "img_size": 32}
    model |= {"backbone_kwargs": {"patch_size": 8}, "method_params": TINY["simclr"]}
    model["train"] = {"steps": 1, "batch_size": 2}
    weights = tmp_path / "out" / "weights.pt"
    config = {"manifests": [str(manifest)], "weights": str(weights), "model": model, "seed": 1}
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(config))
    main(["--config", str(tmp_path / "train_config.yaml")])
    assert load_exported(weights).channels == CHANNELS


def test_unknown_model_key_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "images", n_sites=1)
    model = {"method": "random", "backbone": "vit_tiny_patch16_224", "img_size": 32, "lr": 1}
    with pytest.raises(TypeError, match="'lr'"):
        pretrain(manifests=[manifest], weights=tmp_path / "w.pt", model=ModelConfig(**model))


def test_pretrain_refuses_methods_without_a_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to pretrain"):
        pretrain(manifests=[], weights=tmp_path / "w.pt", model=ModelConfig("random_features"))


class SignalledViews(MemoryViews):
    """MemoryViews that sends ``signum`` to this process while serving item ``at``."""

    def __init__(self, transform, signum: int, at: int) -> None:
        super().__init__(transform)
        self.signum, self.at = signum, at

    def __getitem__(self, key: tuple[int, int]) -> list[torch.Tensor]:
        if self.served == self.at:
            os.kill(os.getpid(), self.signum)
        return super().__getitem__(key)


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_signal_checkpoints_the_step_exits_75_and_resumes_to_the_same_weights(
    signum: int, tmp_path: Path
) -> None:
    cfg = TrainConfig(steps=5, batch_size=2, ckpt_every=4, warmup_epochs=0.5, seed=5)
    whole = tiny_objective("dino")
    train(
        whole,
        views_of(whole),
        cfg,
        tmp_path / "a.pt",
        tmp_path / "a.jsonl",
    )

    before = signal.getsignal(signum)
    stopped = tiny_objective("dino")
    data = SignalledViews(stopped.view_transform(), signum, at=4)  # arrives during step 3
    with pytest.raises(Preempted) as error:
        train(stopped, data, cfg, tmp_path / "b.pt", tmp_path / "b.jsonl")
    assert error.value.code == PREEMPTED_EXIT_CODE == 75
    assert "rerun the job" in str(error.value)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 3  # not a ckpt_every step
    assert signal.getsignal(signum) is before  # the handler was put back

    resumed = tiny_objective("dino")
    train(
        resumed,
        views_of(resumed),
        cfg,
        tmp_path / "b.pt",
        tmp_path / "b.jsonl",
    )
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_sigkill_mid_training_then_rerun_ends_with_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    """A real SIGKILL (no handler runs): the rerun resumes from the last atomic checkpoint."""
    manifest = write_manifest(tmp_path / "images")
    model = {"method": "simclr", "backbone": "vit_tiny_patch16_224", "img_size": 32}
    model |= {"backbone_kwargs": {"patch_size": 8}, "method_params": TINY["simclr"]}
    model["train"] = {"steps": 12, "batch_size": 2, "ckpt_every": 2, "warmup_epochs": 0}
    runs = {}
    for name in ("whole", "killed"):
        config = {"manifests": [str(manifest)], "model": model, "seed": 1}
        config["weights"] = str(tmp_path / name / "weights.pt")
        runs[name] = tmp_path / f"{name}.yaml"
        runs[name].write_text(yaml.safe_dump(config))
    main(["--config", str(runs["whole"])])

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "paintssl.pretrain", "--config", str(runs["killed"])]
    child = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "ckpt/last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert 2 <= torch.load(killed / "ckpt/last.pt", weights_only=True)["step"] < 12
    assert not (killed / "weights.pt").exists()  # the job is not taken as finished
    assert not (killed / "metrics.jsonl").exists()  # the outputs come at the end

    main(["--config", str(runs["killed"])])  # the rerun
    whole = torch.load(tmp_path / "whole/weights.pt", weights_only=True)["state_dict"]
    resumed = torch.load(killed / "weights.pt", weights_only=True)["state_dict"]
    for name, value in whole.items():
        assert torch.equal(value, resumed[name]), name
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 13))
