"""MAE: masked autoencoder with a small transformer decoder (He et al. 2022; Kim et al. 2025)."""

from __future__ import annotations

from typing import ClassVar

import torch
from timm.models.vision_transformer import Block
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


def sincos_pos_embed(dim: int, grid: int, prefix_tokens: int = 1) -> torch.Tensor:
    """Return fixed 2-D sin-cos position embeddings (1, prefix + grid * grid, dim), as MAE's.

    MAE's ``get_2d_sincos_pos_embed``: the first half of each vector encodes the patch's
    column, the second its row, each as [sin, cos] at 10000^(-k / (dim / 4)); the prefix
    (class) tokens get zeros.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64),
        torch.arange(grid, dtype=torch.float64),
        indexing="ij",
    )

    def encode(position: torch.Tensor) -> torch.Tensor:
        angle = position.reshape(-1, 1) * omega
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    patches = torch.cat([encode(cols), encode(rows)], dim=1)
    table = torch.cat([torch.zeros(prefix_tokens, dim, dtype=torch.float64), patches])
    return table.float()[None]


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch * patch * C) in row-major patch order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def random_masking(
    batch: int, n_patches: int, ratio: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visible patch indices (B, K), the inverse shuffle (B, N) and the mask (B, N; 1 = hidden)."""
    n_keep = max(int(n_patches * (1 - ratio)), 1)
    order = torch.rand(batch, n_patches, device=device).argsort(dim=1)
    restore = order.argsort(dim=1)
    mask = torch.ones(batch, n_patches, device=device)
    mask[:, :n_keep] = 0
    return order[:, :n_keep], restore, torch.gather(mask, 1, restore)


def masked_patch_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True
) -> torch.Tensor:
    """Mean squared error on hidden patches only; targets normalised per patch if ``norm_pix``."""
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


class MaeDecoder(nn.Module):
    """Embed visible tokens, insert mask tokens, transformer blocks, predict patch pixels."""

    def __init__(
        self,
        in_dim: int,
        grid: int,
        patch_pixels: int,
        dim: int,
        depth: int,
        heads: int,
        qkv_bias: bool = True,
        fixed_pos_embed: bool = True,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        if fixed_pos_embed:
            self.pos_embed = nn.Parameter(sincos_pos_embed(dim, grid), requires_grad=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        blocks = [Block(dim, heads, mlp_ratio=4.0, qkv_bias=qkv_bias) for _ in range(depth)]
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_pixels)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K, D) encoder tokens -> (B, N, patch_pixels) predictions for every patch."""
        x = self.embed(latent)
        n_hidden = restore.shape[1] - (x.shape[1] - 1)
        patches = torch.cat([x[:, 1:], self.mask_token.expand(len(x), n_hidden, -1)], dim=1)
        patches = torch.gather(patches, 1, restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed
        return self.pred(self.norm(self.blocks(x)))[:, 1:]


class MaeObjective(Objective):
    """MAE with the paper's defaults: mask ratio 0.5, flips only, 4 crops per image.

    As the reference (He et al.'s code): the batch counts crops (the paper's 1024 is 256
    sites x 4 crops) and the lr scales with it; encoder and decoder use fixed 2-D sin-cos
    position embeddings (``fixed_pos_embed``); decoder blocks have ``qkv_bias``. The exported
    feature is the mean of the patch tokens after the encoder's final LayerNorm (the
    pretraining encoder's output, CLS excluded; timm ``global_pool="avg"``, no ``fc_norm``).
    """

    optim_defaults = OptimDefaults(
        batch_size=1024,
        lr=1.5e-4,
        lr_batch=256,
        warmup_epochs=30,
        weight_decay=0.05,
        weight_decay_end=0.05,
        betas=(0.9, 0.95),
    )
    backbone_kwargs: ClassVar[dict[str, object]] = {"global_pool": "avg", "fc_norm": False}
    """Exported features = mean of the final-normed patch tokens (timm pools them itself)."""

    def __init__(
        self,
        backbone: nn.Module,
        mask_ratio: float = 0.5,
        decoder_dim: int = 256,
        decoder_depth: int = 8,
        decoder_heads: int = 8,
        norm_pix_loss: bool = True,
        crops: int = 4,
        decoder_qkv_bias: bool = True,
        fixed_pos_embed: bool = True,
        augment: dict | None = None,
    ) -> None:
        super().__init__(backbone)
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.patch = int(backbone.patch_embed.patch_size[0])
        grid = int(backbone.patch_embed.grid_size[0])
        channels = int(backbone.patch_embed.proj.in_channels)
        if fixed_pos_embed:
            prefix = backbone.pos_embed.shape[1] - grid * grid
            fixed = sincos_pos_embed(backbone.num_features, grid, prefix)
            backbone.pos_embed = nn.Parameter(fixed, requires_grad=False)
        self.decoder = MaeDecoder(
            backbone.num_features,
            grid,
            self.patch**2 * channels,
            decoder_dim,
            decoder_depth,
            decoder_heads,
            decoder_qkv_bias,
            fixed_pos_embed,
        )
        self.mask_ratio, self.norm_pix_loss, self.crops = mask_ratio, norm_pix_loss, crops
        self.augment = AugmentConfig(**{"color": False, **(augment or {})})

    @property
    def crops_per_item(self) -> int:
        """The batch counts crops: each site gives ``crops``."""
        return self.crops

    def view_transform(self) -> MultiCrop:
        """``crops`` cell-aware crops at the backbone's size, flips only."""
        return MultiCrop([CropGroup(self.img_size, self.crops, self.augment)])

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        """Reconstruct the hidden patches of every crop from the visible ones."""
        images = torch.cat(views)
        target = patchify(images, self.patch)
        keep, restore, mask = random_masking(
            len(images), target.shape[1], self.mask_ratio, images.device
        )
        latent = vit_tokens(self.backbone, images, keep)
        pred = self.decoder(latent, restore)
        loss = masked_patch_loss(pred.float(), target.float(), mask, self.norm_pix_loss)
        features = pooled_features(self.backbone, latent)
        return StepOutput(loss, {"embedding_std": embedding_std(features)})
