"""SSLProfiler: DINO over the sites of a well, with cross-site views and local aggregation.

Our design from Dai et al. 2025's abstract (../shared/SPEC.md §4): a training sample is a
well, and its crops come from ``sites_per_well`` (K) of its sites, drawn in a random order.

- **Cross-site views.** With probability ``cross_site_p`` (per well) the student's crops
  (global and local) come from the well's second drawn site while the teacher sees global
  crops of the first: the student must give a crop of one field of view the distribution
  the teacher gives another field of the same well. Otherwise both see the first site, as
  in DINO. As in DINO, the pair (teacher crop i, student crop i) is left out of the loss.
- **Local aggregation.** Each drawn site gives one more global-size crop; the student
  aggregates (``aggregator``: ``mean``, or ``attention`` pooling with a learnt query) the
  features of the even-numbered sites, the teacher (an EMA copy of the aggregator) those
  of the odd-numbered ones, and the student's aggregate must predict the teacher's
  (DINO's cross-entropy through the same heads, its own centre), weighted by
  ``aggregation_weight``. The two subsets are disjoint, so this is a consistency of the
  well's phenotype across fields of view, the unit a profile is made of.
- **DINOv2 terms**, each off unless its weight is > 0: iBOT masked-patch self-distillation
  (``ibot_weight``; the student sees the teacher's global crops with a random share of
  patches replaced by a learnt mask token, and predicts the teacher's patch distributions at
  the masked patches through the shared head, its own centre) and the KoLeo regulariser
  (``koleo_weight``) on the student's global-crop features.

With ``sites_per_well=1``, ``cross_site_p=0`` and both DINOv2 weights 0 (the aggregation
branch needs two sites) the views and loss are DINO's (a unit test checks equal losses and
gradients). Features: the teacher's CLS token, as DINO.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from paintssl.pretrain.augment import augment, cell_crop
from paintssl.pretrain.backbones import vit_tokens
from paintssl.pretrain.objectives.base import StepOutput, pooled_features
from paintssl.pretrain.objectives.dino import DinoObjective, soft_cross_entropy

Site = tuple[torch.Tensor, torch.Tensor]
"""A site image (C, H, W) in [0, 1] and its cell mask (H, W)."""


class MeanPool(nn.Module):
    """Aggregate (B, n, D) crop features to (B, D) by their mean (``dim`` unused)."""

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Mean over the crops."""
        return features.mean(dim=1)


class AttentionPool(nn.Module):
    """Attention pooling with one learnt query: softmax(key(x) . q / sqrt(D)) weighted mean.

    The query starts at 0, so the pool starts as the mean and learns which crops to weigh.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        self.key = nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Weighted mean over the crops of (B, n, D) features."""
        scores = self.key(features) @ self.query / math.sqrt(features.shape[-1])
        return (scores.softmax(dim=-1)[..., None] * features).sum(dim=1)


AGGREGATORS: dict[str, type[nn.Module]] = {"mean": MeanPool, "attention": AttentionPool}


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy regulariser (DINOv2): -mean log nearest-neighbour distance.

    Over the L2-normalised rows of ``features`` (B, D), B >= 2.
    """
    unit = F.normalize(features.float(), dim=-1)
    sims = unit @ unit.T
    sims.fill_diagonal_(-2.0)
    nearest = unit[sims.argmax(dim=1)]
    return -torch.log((unit - nearest).norm(dim=-1) + eps).mean()


def random_patch_mask(
    batch: int, patches: int, ratio: tuple[float, float], probability: float, device: torch.device
) -> torch.Tensor:
    """Return (B, patches) bool: the patches of each image replaced by the mask token.

    With ``probability`` an image gets a share U(ratio) of its patches masked at random
    (iBOT's ratio and probability; random, not blockwise), else none. Uses the global
    torch RNG, which the trainer seeds per step.
    """
    shares = torch.empty(batch).uniform_(*ratio) * (torch.rand(batch) < probability)
    counts = (shares * patches).round().long()
    ranks = torch.rand(batch, patches).argsort(dim=1).argsort(dim=1)
    return (ranks < counts[:, None]).to(device)


def patch_distillation(
    student: torch.Tensor,
    teacher: torch.Tensor,
    masked: torch.Tensor,
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Return iBOT's loss at the masked patches.

    The cross-entropy of the centred, sharpened teacher patch distributions and the
    student's, averaged over an image's masked patches, then over the images with any (0
    when no patch is masked).
    """
    per_patch = soft_cross_entropy(student, teacher, center, student_temp, teacher_temp)
    counts = masked.sum(dim=1)
    per_image = (per_patch * masked).sum(dim=1) / counts.clamp_min(1)
    has_mask = counts > 0
    return per_image[has_mask].mean() if has_mask.any() else per_patch.sum() * 0.0


class WellMultiCrop:
    """Well transform: the drawn sites of a well -> SSLProfiler's views.

    In this order: teacher global crops (site 0), student global crops (the same tensors,
    or site 1's for a cross-site well), student local crops (of the student's site), then
    one global-size crop per drawn site when the aggregation branch is on.
    """

    def __init__(self, objective: SslProfilerObjective) -> None:
        self.size, self.local_size = objective.img_size, objective.local_crop_size
        self.global_crops, self.local_crops = objective.global_crops, objective.local_crops
        self.augment, self.cross_site_p = objective.augment, objective.cross_site_p
        self.site_crops = objective.aggregates

    def crops(self, site: Site, size: int, count: int, gen: torch.Generator) -> list[torch.Tensor]:
        """``count`` augmented cell-aware crops of ``size`` px of one site."""
        image, cells = site
        return [
            augment(cell_crop(image, cells, size, gen), self.augment, gen) for _ in range(count)
        ]

    def __call__(self, sites: list[Site], gen: torch.Generator) -> list[torch.Tensor]:
        """Return the views of one well (``sites`` in the drawn order)."""
        teacher = self.crops(sites[0], self.size, self.global_crops, gen)
        cross = self.cross_site_p > 0 and bool(torch.rand((), generator=gen) < self.cross_site_p)
        own = sites[1] if cross else sites[0]
        student = self.crops(own, self.size, self.global_crops, gen) if cross else teacher
        views = [*teacher, *student, *self.crops(own, self.local_size, self.local_crops, gen)]
        if self.site_crops:
            views += [self.crops(site, self.size, 1, gen)[0] for site in sites]
        return views


class SslProfilerObjective(DinoObjective):
    """SSLProfiler on DINO's defaults (see the module docstring); a sample is a well."""

    def __init__(
        self,
        backbone: nn.Module,
        sites_per_well: int = 2,
        cross_site_p: float = 0.5,
        aggregation_weight: float = 1.0,
        aggregator: str = "mean",
        ibot_weight: float = 0.0,
        ibot_mask_ratio: tuple[float, float] = (0.1, 0.5),
        ibot_mask_probability: float = 0.5,
        koleo_weight: float = 0.0,
        **dino: object,
    ) -> None:
        super().__init__(backbone, **dino)
        self._check(sites_per_well, cross_site_p, aggregation_weight, aggregator)
        self.sites_per_well, self.cross_site_p = sites_per_well, cross_site_p
        self.aggregation_weight, self.aggregates = aggregation_weight, aggregation_weight > 0
        self.ibot_weight, self.koleo_weight = ibot_weight, koleo_weight
        self.ibot_mask_ratio = tuple(ibot_mask_ratio)
        self.ibot_mask_probability = ibot_mask_probability
        dim, out_dim = backbone.num_features, self.center.shape[-1]
        self.aggregator = AGGREGATORS[aggregator](dim)
        self.teacher_aggregator = copy.deepcopy(self.aggregator).requires_grad_(False)
        self.register_buffer("aggregate_center", torch.zeros(1, out_dim))
        self.register_buffer("patch_center", torch.zeros(1, out_dim))
        self.mask_token = nn.Parameter(torch.zeros(dim)) if ibot_weight > 0 else None

    @staticmethod
    def _check(sites: int, cross_p: float, weight: float, aggregator: str) -> None:
        if sites < 1:
            raise ValueError(f"sites_per_well must be >= 1, got {sites}")
        if not 0 <= cross_p <= 1:
            raise ValueError(f"cross_site_p must be in [0, 1], got {cross_p}")
        if sites < 2 and (cross_p > 0 or weight > 0):
            raise ValueError(
                "cross-site views and the aggregation branch need sites_per_well >= 2; set "
                "cross_site_p: 0 and aggregation_weight: 0 for one site per well"
            )
        if weight < 0:
            raise ValueError(f"aggregation_weight must be >= 0, got {weight}")
        if aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {sorted(AGGREGATORS)}, got {aggregator!r}")

    def train(self, mode: bool = True) -> SslProfilerObjective:
        """As DINO; the teacher's aggregator too is always in eval mode."""
        super().train(mode)
        self.teacher_aggregator.eval()
        return self

    def view_transform(self) -> WellMultiCrop:
        """Crops of a well's drawn sites (see :class:`WellMultiCrop`)."""
        return WellMultiCrop(self)

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """DINO's pairs and the aggregator."""
        return [*super().ema_pairs(), (self.aggregator, self.teacher_aggregator)]

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        """DINO on the (cross-site) crops, plus the switched-on aggregation and DINOv2 terms."""
        g, n_crops = self.global_crops, 2 * self.global_crops + self.local_crops
        teacher_views, site_views = views[:g], views[n_crops:]
        loss, metrics, student_features = self.distill(teacher_views, views[g:n_crops])
        metrics["dino_loss"] = loss.detach()
        terms = {
            "aggregation": (self.aggregation_weight, lambda: self.aggregation_loss(site_views)),
            "ibot": (self.ibot_weight, lambda: self.ibot_loss(torch.cat(teacher_views))),
            "koleo": (self.koleo_weight, lambda: koleo_loss(student_features[: len(views[0])])),
        }
        for name, (weight, term) in terms.items():
            if weight > 0:
                value = term()
                metrics[f"{name}_loss"] = value.detach()
                loss = loss + weight * value
        return StepOutput(loss, metrics)

    def aggregation_loss(self, site_views: list[torch.Tensor]) -> torch.Tensor:
        """Return the cross-site consistency loss of the aggregates of disjoint site subsets.

        The cross-entropy of the teacher's aggregate of the odd sites and the student's of
        the even sites (their centred, sharpened head distributions).
        """
        student_sites, teacher_sites = site_views[0::2], site_views[1::2]
        with torch.no_grad():
            crops = torch.cat(teacher_sites)
            tokens = vit_tokens(self.teacher_backbone, crops)
            features = pooled_features(self.teacher_backbone, tokens)
            pooled = self.teacher_aggregator(torch.stack(features.chunk(len(teacher_sites)), 1))
            teacher = self.teacher_head(pooled).float()
        tokens = vit_tokens(self.backbone, torch.cat(student_sites))
        features = pooled_features(self.backbone, tokens)
        pooled = self.aggregator(torch.stack(features.chunk(len(student_sites)), 1))
        student = self.head(pooled, freeze_last_layer=self.last_layer_is_frozen()).float()
        loss = soft_cross_entropy(student, teacher, self.aggregate_center, self.student_temp,
                                  self.current_teacher_temp()).mean()  # fmt: skip
        self._update_center(teacher, self.aggregate_center)
        return loss

    def ibot_loss(self, crops: torch.Tensor) -> torch.Tensor:
        """iBOT: the student on masked teacher crops predicts the teacher's patch outputs."""
        n_prefix = self.backbone.num_prefix_tokens
        with torch.no_grad():
            teacher = self.teacher_head(vit_tokens(self.teacher_backbone, crops)[:, n_prefix:])
            teacher = teacher.float()
        masked = random_patch_mask(len(crops), teacher.shape[1], self.ibot_mask_ratio,
                                   self.ibot_mask_probability, crops.device)  # fmt: skip
        tokens = vit_tokens(self.backbone, crops, masked=masked, mask_token=self.mask_token)
        student = self.head(tokens[:, n_prefix:], freeze_last_layer=self.last_layer_is_frozen())
        student = student.float()
        temp = self.current_teacher_temp()
        loss = patch_distillation(student, teacher, masked, self.patch_center,
                                  self.student_temp, temp)  # fmt: skip
        self._update_center(teacher.flatten(0, 1), self.patch_center)
        return loss
