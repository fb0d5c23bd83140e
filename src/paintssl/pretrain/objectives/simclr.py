"""SimCLR: contrastive learning with the NT-Xent loss (Chen et al. 2020; Kim et al. 2025)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paintssl.pretrain.augment import AugmentConfig, CropGroup, MultiCrop
from paintssl.pretrain.backbones import vit_tokens
from paintssl.pretrain.objectives.base import (
    Objective,
    OptimDefaults,
    StepOutput,
    embedding_std,
    pooled_features,
)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE over 2B views: each view's positive is its pair, the other 2B - 2 are negatives."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = len(z1)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)


class SimclrObjective(Objective):
    """SimCLR with the paper's defaults: 2 views (Color + Flip), temperature 0.2, 128-d output.

    The projector is Linear-ReLU-Linear with a 512-wide hidden layer (4 x the 128-d output, as
    the authors' code).

    Under DDP the negatives are the views of the same process (no cross-process gather).
    """

    optim_defaults = OptimDefaults(
        batch_size=256,
        lr=1e-3,
        lr_batch=256,
        warmup_epochs=30,
        weight_decay=0.1,
        weight_decay_end=0.1,
    )

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.2,
        proj_dim: int = 128,
        proj_hidden_dim: int = 512,
        augment: dict | None = None,
    ) -> None:
        super().__init__(backbone)
        self.projector = nn.Sequential(
            nn.Linear(backbone.num_features, proj_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_hidden_dim, proj_dim),
        )
        self.temperature = temperature
        self.augment = AugmentConfig(**(augment or {}))

    def view_transform(self) -> MultiCrop:
        """Two cell-aware crops at the backbone's size, Color + Flip."""
        return MultiCrop([CropGroup(self.img_size, 2, self.augment)])

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        """NT-Xent between the projections of the two views."""
        features = pooled_features(self.backbone, vit_tokens(self.backbone, torch.cat(views)))
        z1, z2 = self.projector(features).chunk(2)
        loss = nt_xent(z1, z2, self.temperature)
        return StepOutput(loss, {"embedding_std": embedding_std(features)})
