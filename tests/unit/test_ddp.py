"""DDP on CPU: two gloo processes under torchrun train like one process with the same batch.

The two ranks are started as the pretrain rule starts them on N GPUs
(:func:`paintssl.pretrain.launch.launch_pretrain`), here with the gloo backend.

Global batch 8 as 2 x 4; DINO without drop path, so the only difference between the runs is
the order of floating-point sums (gradients averaged by DDP, the centre all-reduced). Only
rank 0 writes the metrics, checkpoint and weights.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paintssl.pretrain.backbones import load_exported
from paintssl.pretrain.config import ModelConfig
from paintssl.pretrain.launch import launch_pretrain

from .test_train import TINY, write_manifest

LOSS_RTOL = 1e-5
"""Measured: the loss curves differ by at most 9.4e-7 relative, the weights by 3.7e-9."""
WEIGHTS_ATOL = 1e-7


def run_config(root: Path, manifest: Path) -> dict:
    """Keyword arguments of ``pretrain``: tiny DINO, 6 steps of 8 crops."""
    model = {"method": "dino", "backbone": "vit_tiny_patch16_224", "img_size": 32}
    model |= {"backbone_kwargs": {"patch_size": 8, "depth": 2}}
    model["method_params"] = TINY["dino"] | {"drop_path_rate": 0.0}
    model["train"] = {"steps": 6, "batch_size": 8, "ckpt_every": 3, "warmup_epochs": 0.5}
    outputs = {"weights": str(root / "weights.pt"), "ckpt": str(root / "ckpt/last.pt")}
    return {"manifests": [str(manifest)], "model": ModelConfig(**model), "seed": 3, **outputs}


def losses(root: Path) -> np.ndarray:
    records = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))  # one record per step: rank 0 only
    return np.array([r["loss"] for r in records])


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    manifest = write_manifest(tmp_path / "images", n_sites=8)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    launch_pretrain(**run_config(single, manifest))  # in this process
    launch_pretrain(**run_config(ddp, manifest), processes=2)  # torchrun, 2 gloo ranks
    np.testing.assert_allclose(losses(ddp), losses(single), rtol=LOSS_RTOL)
    assert sorted(p.name for p in ddp.iterdir()) == ["ckpt", "metrics.jsonl", "weights.pt"]
    running = ["last.pt", "metrics.jsonl", "torchrun.yaml"]  # the log kept with the checkpoint
    assert sorted(p.name for p in (ddp / "ckpt").iterdir()) == running
    assert torch.load(ddp / "ckpt/last.pt", weights_only=True)["step"] == 6
    a, b = load_exported(single / "weights.pt"), load_exported(ddp / "weights.pt")
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=WEIGHTS_ATOL, msg=name)
