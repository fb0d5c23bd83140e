"""Objective contract (parametrised over OBJECTIVES), the ViT token adapter and loss invariants."""

from pathlib import Path

import pytest
import torch

from paintssl.pretrain.backbones import create_backbone, vit_tokens
from paintssl.pretrain.objectives import OBJECTIVES, Progress, build_objective
from paintssl.pretrain.objectives.dino import DinoObjective, dino_loss
from paintssl.pretrain.objectives.mae import (
    masked_patch_loss,
    patchify,
    random_masking,
    sincos_pos_embed,
)
from paintssl.pretrain.objectives.simclr import nt_xent
from paintssl.pretrain.optim import TrainConfig, param_groups
from paintssl.pretrain.trainer import restore_checkpoint, run_identity, save_checkpoint

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
TINY["sslprofiler"] = {**TINY["dino"], "aggregator": "attention", "ibot_weight": 1.0,
                       "koleo_weight": 0.1}  # fmt: skip


def tiny_objective(method: str, seed: int = 0, **overrides: object):
    torch.manual_seed(seed)
    kwargs = OBJECTIVES[method].backbone_kwargs
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8, **kwargs)
    return build_objective(method, backbone, {**TINY[method], **overrides})


def tiny_views(objective, batch: int = 3, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    transform = objective.view_transform()
    samples = []
    for _ in range(batch):
        sites = [torch.rand(5, 48, 48, generator=gen) for _ in range(objective.sites_per_well or 1)]
        pairs = [(image, image[0] > 0.5) for image in sites]
        samples.append(transform(*pairs[0], gen) if objective.sites_per_well is None else
                       transform(pairs, gen))  # fmt: skip
    return [(torch.stack(v) - 0.5) / 0.3 for v in zip(*samples, strict=True)]


def test_registry_covers_the_paper_methods() -> None:
    assert set(OBJECTIVES) >= {"dino", "mae", "simclr", "sslprofiler"}


@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_objective_contract(method: str, tmp_path: Path) -> None:
    objective = tiny_objective(method)
    out = objective(tiny_views(objective))
    assert out.loss.ndim == 0
    assert torch.isfinite(out.loss)
    assert torch.isfinite(out.metrics["embedding_std"])
    out.loss.backward()
    grads = [p.grad for p in objective.backbone.parameters() if p.grad is not None]
    assert grads
    assert sum(float(g.abs().sum()) for g in grads) > 0
    objective.after_step(Progress(step=1, total_steps=4, epoch=0.5))
    assert float(objective.epoch) == 0.5

    clone = tiny_objective(method, seed=1)
    clone.load_state_dict(objective.state_dict())
    for (name, a), b in zip(
        objective.state_dict().items(), clone.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name

    opt = torch.optim.AdamW(param_groups(objective))
    identity = run_identity(TrainConfig(steps=4), {"method": method})
    save_checkpoint(tmp_path / "last.pt", objective, opt, 3, identity)
    fresh = tiny_objective(method, seed=2)
    step = restore_checkpoint(
        tmp_path / "last.pt", fresh, torch.optim.AdamW(param_groups(fresh)), identity
    )
    assert step == 3
    assert torch.equal(fresh.state_dict()["epoch"], objective.state_dict()["epoch"])
    exported = fresh.export_backbone().state_dict()
    assert all(
        torch.equal(v, objective.export_backbone().state_dict()[k]) for k, v in exported.items()
    )


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="dino, mae, simclr, sslprofiler"):
        build_objective("byol", torch.nn.Identity(), {})


def test_misspelt_parameter_is_a_type_error() -> None:
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8)
    with pytest.raises(TypeError, match="teacher_tmp"):
        build_objective("dino", backbone, {"teacher_tmp": 0.04})


def test_token_adapter_matches_timm_and_handles_other_sizes_and_masks() -> None:
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8).eval()
    images = torch.randn(2, 5, 32, 32)
    torch.testing.assert_close(vit_tokens(backbone, images), backbone.forward_features(images))
    assert vit_tokens(backbone, torch.randn(2, 5, 16, 16)).shape == (2, 1 + 4, 192)
    keep = torch.tensor([[0, 5], [3, 15]])
    assert vit_tokens(backbone, images, keep).shape == (2, 3, 192)


def test_paper_defaults() -> None:
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8)
    dino = DinoObjective(backbone, out_dim=16)
    assert (dino.student_temp, dino.teacher_temp, dino.warmup_teacher_temp) == (0.1, 0.04, 0.01)
    assert (dino.center_momentum, dino.momentum_teacher) == (0.9, 0.9995)
    assert (dino.global_crops, dino.local_crops, dino.local_crop_size) == (2, 8, 96)
    assert OBJECTIVES["dino"].optim_defaults.clip_grad == 3.0
    assert OBJECTIVES["mae"].optim_defaults.betas == (0.9, 0.95)


def test_nt_xent_is_lower_for_identical_views() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    assert nt_xent(z, z, 0.2) < nt_xent(z, torch.randn(16, 8), 0.2)


def test_dino_center_is_an_ema_of_teacher_outputs() -> None:
    objective = tiny_objective("dino")
    objective.center.fill_(1.0)
    views = tiny_views(objective)
    with torch.no_grad():
        crops = torch.cat(views[:2])
        features = objective.teacher_backbone.forward_head(
            vit_tokens(objective.teacher_backbone, crops), pre_logits=True
        )
        batch_mean = objective.teacher_head(features).mean(dim=0, keepdim=True)
    objective(views)
    torch.testing.assert_close(objective.center, 0.9 * torch.ones(1, 8) + 0.1 * batch_mean)


def test_dino_loss_ignores_same_view_pairs_and_is_centred() -> None:
    teacher = [torch.randn(4, 8), torch.randn(4, 8)]
    # student equal to the teacher on the matching crop only: that pair must not count
    student = [teacher[0] * 100, torch.zeros(4, 8)]
    center = torch.zeros(1, 8)
    loss = dino_loss(student, teacher, center, 0.1, 0.04)
    swapped = dino_loss([torch.zeros(4, 8), teacher[0] * 100], teacher, center, 0.1, 0.04)
    assert loss > swapped
    shifted = dino_loss(student, [t + 3 for t in teacher], center + 3, 0.1, 0.04)
    torch.testing.assert_close(loss, shifted)


def test_dino_schedules_and_frozen_last_layer() -> None:
    objective = tiny_objective("dino", warmup_teacher_temp_epochs=2, freeze_last_layer_epochs=1)
    assert objective.current_teacher_temp() == pytest.approx(0.01)
    objective.after_step(Progress(1, 10, epoch=1.0))
    assert objective.current_teacher_temp() == pytest.approx(0.025)
    objective.after_step(Progress(2, 10, epoch=5.0))
    assert objective.current_teacher_temp() == pytest.approx(0.04)
    assert objective.teacher_momentum(Progress(0, 10, 0.0)) == pytest.approx(0.9995)
    assert objective.teacher_momentum(Progress(10, 10, 5.0)) == pytest.approx(1.0)

    frozen = tiny_objective("dino", freeze_last_layer_epochs=1)
    frozen(tiny_views(frozen)).loss.backward()
    assert frozen.head.last_layer.weight.grad is None
    frozen.after_step(Progress(1, 10, epoch=1.0))
    frozen(tiny_views(frozen)).loss.backward()
    assert frozen.head.last_layer.weight.grad is not None


def test_dino_ema_moves_teacher_and_exports_it() -> None:
    objective = tiny_objective("dino", momentum_teacher=0.5)
    with torch.no_grad():
        for p in objective.backbone.parameters():
            p.add_(1.0)
    before = objective.teacher_backbone.pos_embed.clone()
    objective.after_step(Progress(0, 10, 0.0))
    expected = 0.5 * before + 0.5 * objective.backbone.pos_embed
    torch.testing.assert_close(objective.teacher_backbone.pos_embed, expected)
    assert objective.export_backbone() is objective.teacher_backbone


def test_mae_loss_only_counts_masked_patches() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(2, 16, 12), torch.randn(2, 16, 12)
    mask = torch.zeros(2, 16)
    mask[:, ::2] = 1
    loss = masked_patch_loss(pred, target, mask)
    visible = pred.clone()
    visible[:, 1::2] += 5.0
    torch.testing.assert_close(masked_patch_loss(visible, target, mask), loss)
    hidden = pred.clone()
    hidden[:, ::2] += 5.0
    assert masked_patch_loss(hidden, target, mask) > loss
    # normalised-pixel targets: a per-patch affine change of the target does not matter
    torch.testing.assert_close(masked_patch_loss(pred, 3 * target + 1, mask), loss)


def test_mae_masking_and_patchify() -> None:
    keep, restore, mask = random_masking(3, 16, 0.5, torch.device("cpu"))
    assert keep.shape == (3, 8)
    assert (mask.sum(dim=1) == 8).all()
    assert (torch.gather(mask, 1, keep) == 0).all()
    assert (restore.sort(dim=1).values == torch.arange(16)).all()
    images = torch.arange(2 * 5 * 16 * 16, dtype=torch.float32).view(2, 5, 16, 16)
    patches = patchify(images, 8)
    assert patches.shape == (2, 4, 8 * 8 * 5)
    torch.testing.assert_close(patches[0, 1, :5], images[0, :, 0, 8])  # pixel-major, channel-minor


def test_mae_backbone_pools_patch_tokens() -> None:
    objective = tiny_objective("mae").eval()
    images = torch.randn(2, 5, 32, 32)
    tokens = objective.backbone.forward_features(images)
    torch.testing.assert_close(objective.backbone(images), tokens[:, 1:].mean(dim=1))


def test_dino_schedules_as_fractions_of_the_run() -> None:
    objective = tiny_objective(
        "dino", warmup_teacher_temp_fraction=0.5, freeze_last_layer_fraction=0.1
    )
    objective.after_step(Progress(25, 100, epoch=50.0))  # epochs do not matter
    assert objective.current_teacher_temp() == pytest.approx(0.01 + 0.5 * 0.03)
    objective(tiny_views(objective)).loss.backward()
    assert objective.head.last_layer.weight.grad is not None  # 0.25 of the run > 0.1
    with pytest.raises(ValueError, match="not both"):
        tiny_objective("dino", freeze_last_layer_epochs=1, freeze_last_layer_fraction=0.1)


def test_dino_head_last_layer_as_the_reference() -> None:
    head = tiny_objective("dino", bottleneck_dim=64, out_dim=512).head
    weight = head.last_layer.weight.detach()  # nn.Linear's default init: U(-1/sqrt(fan_in), ...)
    assert float(weight.abs().max()) <= 1 / 64**0.5
    assert float(weight.std()) == pytest.approx(1 / (64**0.5 * 3**0.5), rel=0.05)
    assert not head.last_layer_scale.requires_grad
    assert torch.equal(head.last_layer_scale, torch.ones(512, 1))
    free = tiny_objective("dino", norm_last_layer=False).head
    assert free.last_layer_scale.requires_grad
    with torch.no_grad():
        free.last_layer_scale.fill_(2.0)
    x = torch.randn(3, 192)  # the tiny ViT's width
    unit = torch.nn.functional.normalize(free.mlp(x), dim=-1)
    rows = torch.nn.functional.normalize(free.last_layer.weight, dim=-1)
    torch.testing.assert_close(free(x), 2.0 * unit @ rows.T)


def test_dino_softmax_and_loss_in_fp32_under_bf16_autocast() -> None:
    objective = tiny_objective("dino")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = objective(tiny_views(objective))
    assert out.loss.dtype == torch.float32
    assert objective.center.dtype == torch.float32


def test_mae_reference_details() -> None:
    mae = tiny_objective("mae", crops=4)
    assert mae.crops_per_item == 4
    assert all(b.attn.qkv.bias is not None for b in mae.decoder.blocks)
    for table in (mae.backbone.pos_embed, mae.decoder.pos_embed):
        assert not table.requires_grad
        assert torch.equal(table[0, 0], torch.zeros(table.shape[-1]))  # CLS
    pos = sincos_pos_embed(16, grid=3)[0, 1:].reshape(3, 3, 16)
    # first half encodes the column, second the row; position 0 is [sin 0, cos 0] = [0, 1]
    torch.testing.assert_close(pos[0, :, :8], pos[2, :, :8])
    torch.testing.assert_close(pos[:, 0, 8:], pos[:, 2, 8:])
    torch.testing.assert_close(
        pos[0, 0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4)
    )
    torch.testing.assert_close(pos[0, 1, :4], torch.sin(1 / 10000 ** (torch.arange(4) / 4)))
    learnt = tiny_objective("mae", fixed_pos_embed=False, decoder_qkv_bias=False)
    assert learnt.backbone.pos_embed.requires_grad
    assert learnt.decoder.blocks[0].attn.qkv.bias is None


def test_simclr_projector_width_is_the_authors() -> None:
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8)
    projector = OBJECTIVES["simclr"](backbone).projector
    assert (projector[0].out_features, projector[2].out_features) == (512, 128)


def test_mae_features_are_the_mean_of_the_normed_patch_tokens() -> None:
    mae = tiny_objective("mae").eval()
    images = torch.randn(2, 5, 32, 32)
    tokens = vit_tokens(mae.backbone, images)  # after the encoder's final LayerNorm
    expected = tokens[:, 1:].mean(dim=1)
    torch.testing.assert_close(mae.export_backbone()(images), expected)
