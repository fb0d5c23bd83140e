"""SSLProfiler: reduction to DINO, cross-site views, local aggregation, iBOT and KoLeo terms."""

from pathlib import Path

import pytest
import torch

from paintssl.pretrain.backbones import create_backbone
from paintssl.pretrain.data import WellViews
from paintssl.pretrain.objectives import Progress, build_objective
from paintssl.pretrain.objectives.sslprofiler import (
    AttentionPool,
    koleo_loss,
    patch_distillation,
    random_patch_mask,
)

from .test_data import write_manifest
from .test_objectives import TINY

FLIPS = {"augment": {"color": False}}  # intensities kept: a crop tells its site
DINO_AS_SSLPROFILER = {"sites_per_well": 1, "cross_site_p": 0.0, "aggregation_weight": 0.0}


def tiny(method: str, **params: object):
    torch.manual_seed(0)
    backbone = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8)
    return build_objective(method, backbone, {**TINY["dino"], **params})


def site(seed: int, level: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(5, 48, 48, generator=torch.Generator().manual_seed(seed))
    image = image if level is None else torch.full_like(image, level)
    return image, torch.ones(48, 48, dtype=torch.bool)


def batch(samples: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [torch.stack(v) for v in zip(*samples, strict=True)]


def test_one_site_no_cross_no_aggregation_is_dino_exactly() -> None:
    dino, ours = tiny("dino"), tiny("sslprofiler", **DINO_AS_SSLPROFILER)
    sites = [site(i) for i in range(3)]
    dino_views = batch([dino.view_transform()(*s, torch.Generator().manual_seed(7)) for s in sites])
    our_views = batch([ours.view_transform()([s], torch.Generator().manual_seed(7)) for s in sites])
    g = dino.global_crops
    assert len(our_views) == len(dino_views) + g
    for ours_view, dino_view in zip(our_views[:g] + our_views[2 * g :], dino_views, strict=True):
        assert torch.equal(ours_view, dino_view)
    losses = []
    for objective, views in ((dino, dino_views), (ours, our_views)):
        torch.manual_seed(1)  # drop path
        loss = objective(views).loss
        loss.backward()
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    ours_params = dict(ours.named_parameters())
    for name, param in dino.named_parameters():
        if param.grad is not None:
            assert torch.equal(param.grad, ours_params[name].grad), name
    assert torch.equal(dino.center, ours.center)
    for objective in (dino, ours):
        objective.after_step(Progress(1, 10, 0.1))
    assert torch.equal(dino.teacher_backbone.pos_embed, ours.teacher_backbone.pos_embed)


def test_cross_site_views_take_the_student_crops_from_another_site() -> None:
    sites = [site(0, level=0.2), site(1, level=0.8)]
    cross = tiny("sslprofiler", cross_site_p=1.0, aggregation_weight=0.0, **FLIPS)
    views = cross.view_transform()(sites, torch.Generator().manual_seed(0))
    g, n_local = cross.global_crops, cross.local_crops
    assert len(views) == 2 * g + n_local
    assert all(torch.allclose(v, torch.tensor(0.2)) for v in views[:g])  # teacher: site 0
    assert all(torch.allclose(v, torch.tensor(0.8)) for v in views[g:])  # student: site 1
    same = tiny("sslprofiler", cross_site_p=0.0, aggregation_weight=0.0, **FLIPS)
    views = same.view_transform()(sites, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(views[:g], views[g : 2 * g], strict=True))


def test_cross_site_share_follows_its_probability() -> None:
    objective = tiny("sslprofiler", cross_site_p=0.3, aggregation_weight=0.0, **FLIPS)
    transform, sites = objective.view_transform(), [site(0, 0.2), site(1, 0.8)]
    draws = 400
    crossed = sum(
        bool(
            torch.allclose(transform(sites, torch.Generator().manual_seed(i))[2], torch.tensor(0.8))
        )
        for i in range(draws)
    )
    assert abs(crossed / draws - 0.3) < 4 * (0.3 * 0.7 / draws) ** 0.5


def test_aggregation_branch_matches_disjoint_site_subsets() -> None:
    objective = tiny("sslprofiler", sites_per_well=4, aggregator="attention", **FLIPS)
    sites = [site(i, level=0.1 * (i + 1)) for i in range(4)]
    views = objective.view_transform()(sites, torch.Generator().manual_seed(0))
    site_views = views[2 * objective.global_crops + objective.local_crops :]
    assert [round(float(v.mean()), 3) for v in site_views] == [0.1, 0.2, 0.3, 0.4]
    out = objective(batch([views, views]))
    assert out.metrics["aggregation_loss"] > 0
    out.loss.backward()
    assert objective.aggregator.query.grad is not None
    assert objective.aggregator.query.grad.abs().sum() > 0
    assert objective.teacher_aggregator.query.grad is None
    assert (objective.aggregate_center != 0).any()


def test_attention_pool_starts_as_the_mean_and_weighs_crops() -> None:
    pool = AttentionPool(6)
    features = torch.randn(3, 4, 6)
    torch.testing.assert_close(pool(features), features.mean(dim=1))
    with torch.no_grad():
        pool.query.fill_(5.0)
    assert not torch.allclose(pool(features), features.mean(dim=1))


def test_koleo_is_the_mean_negative_log_nearest_distance() -> None:
    features = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    unit = torch.nn.functional.normalize(features, dim=-1)
    distances = torch.cdist(unit, unit) + torch.eye(16) * 10
    expected = -torch.log(distances.min(dim=1).values + 1e-8).mean()
    torch.testing.assert_close(koleo_loss(features), expected)
    clustered = features[:1] + 1e-3 * features
    assert koleo_loss(clustered) > koleo_loss(features)


def test_patch_mask_share_and_ibot_counts_masked_patches_only() -> None:
    torch.manual_seed(0)
    mask = random_patch_mask(2000, 16, (0.25, 0.25), 0.5, torch.device("cpu"))
    masked_images = mask.any(dim=1)
    assert abs(masked_images.float().mean() - 0.5) < 4 * (0.25 / 2000) ** 0.5
    assert set(mask[masked_images].sum(dim=1).tolist()) == {4}
    student, teacher = torch.randn(2, 16, 8), torch.randn(2, 16, 8)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    center = torch.zeros(1, 8)
    loss = patch_distillation(student, teacher, mask, center, 0.1, 0.04)
    visible = student.clone()
    visible[:, 5:, 0] += 3.0
    torch.testing.assert_close(patch_distillation(visible, teacher, mask, center, 0.1, 0.04), loss)
    hidden = student.clone()
    hidden[:, :5, 0] += 3.0
    assert not torch.allclose(patch_distillation(hidden, teacher, mask, center, 0.1, 0.04), loss)


def test_ibot_and_koleo_terms_train_their_parameters() -> None:
    objective = tiny("sslprofiler", ibot_weight=1.0, koleo_weight=0.1,
                     ibot_mask_probability=1.0)  # fmt: skip
    transform = objective.view_transform()
    views = batch([transform([site(2 * i), site(2 * i + 1)], torch.Generator().manual_seed(i))
                   for i in range(3)])  # fmt: skip
    torch.manual_seed(0)
    out = objective(views)
    assert {"dino_loss", "aggregation_loss", "ibot_loss", "koleo_loss"} <= set(out.metrics)
    weighted = (out.metrics["dino_loss"] + out.metrics["aggregation_loss"]
                + out.metrics["ibot_loss"] + 0.1 * out.metrics["koleo_loss"])  # fmt: skip
    torch.testing.assert_close(out.loss.detach(), weighted)
    out.loss.backward()
    assert objective.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sites_per_well": 1}, "need sites_per_well >= 2"),
        ({"cross_site_p": 1.5}, r"cross_site_p must be in \[0, 1\]"),
        ({"aggregator": "max"}, "aggregator must be one of"),
        ({"teacher_tmp": 0.04}, "unknown method_params"),
    ],
)
def test_bad_settings_are_refused(params: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        tiny("sslprofiler", **params)


def test_well_views_draw_distinct_sites_of_one_well(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, n_sites=5)  # wells A01, A02: two sites; A03: one

    def transform(sites, gen):
        return [image for image, _ in sites]

    data = WellViews([manifest], transform, [0.0] * 5, [1.0] * 5, sites_per_well=2)
    assert len(data) == 3
    for seed in range(10):
        drawn = data.draw_sites(0, torch.Generator().manual_seed(seed))
        assert sorted(drawn) == [0, 1]
        assert data.draw_sites(2, torch.Generator().manual_seed(seed)) == [4, 4]
    first, again = data[(1, 3)], data[(1, 3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])
