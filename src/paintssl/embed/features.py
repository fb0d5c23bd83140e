"""Tile features of a timm ViT: summaries of chosen blocks' tokens, averaged over flips.

Every chosen block's tokens go through the network's final norm ``net.norm`` (as timm's
``forward_intermediates(norm=True)`` and DINO's linear evaluation of its last blocks), so
block -1 gives the tokens of ``forward_features``. A block's summaries (``EmbedConfig.tokens``)
are ``pooled``, the network's own feature ``forward_head(pre_logits=True)`` (the class token
for DINO, SimCLR and random, the mean patch token for MAE, plus ``fc_norm`` where the
backbone has one), ``cls`` (the class token) and ``mean_patch`` (the mean of the patch
tokens). The defaults (``pooled`` of block -1, no flip) are the network's forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paintssl.embed.tiles import EmbedConfig

FLIP_DIMS: dict[str, tuple[int, ...]] = {"h": (-1,), "v": (-2,), "hv": (-2, -1)}
"""Tensor dimensions each flip of ``FLIPS`` reverses in (B, C, H, W) tiles."""


def absolute_blocks(blocks: Sequence[int], depth: int) -> list[int]:
    """Return ``blocks`` (Python indices, -1 = the last) as 0-based indices into ``depth`` blocks.

    Raises
    ------
    ValueError
        For an index outside the network, or two that name the same block.
    """
    absolute = [b + depth if b < 0 else b for b in blocks]
    outside = [b for b, a in zip(blocks, absolute, strict=True) if not 0 <= a < depth]
    if outside:
        raise ValueError(f"embed.blocks {outside}: the network has {depth} blocks "
                         f"({-depth}..{depth - 1})")  # fmt: skip
    if len(set(absolute)) < len(absolute):
        raise ValueError(f"embed.blocks {list(blocks)} name a block twice")
    return absolute


def feature_width(net: nn.Module, cfg: EmbedConfig) -> int:
    """Width of a tile's feature: every summary of every block, each ``net.num_features``."""
    return len(cfg.blocks) * len(cfg.tokens) * net.num_features


def _summary(net: nn.Module, tokens: torch.Tensor, token: str) -> torch.Tensor:
    """One summary (B, D) of a block's final-normed tokens (B, prefix + patches, D)."""
    if token == "cls":
        return tokens[:, 0]
    if token == "mean_patch":
        return tokens[:, net.num_prefix_tokens :].mean(dim=1)
    return net.forward_head(tokens, pre_logits=True)


def token_summaries(
    net: nn.Module, tiles: torch.Tensor, tokens: Sequence[str], blocks: Sequence[int]
) -> torch.Tensor:
    """Concatenated summaries (B, len(blocks) * len(tokens) * D) of a batch of tiles.

    Block by block in the order of ``blocks``, each block's ``tokens`` in their order. The
    blocks' outputs are caught by forward hooks during ``net.forward_features`` and normed
    with ``net.norm``: the tokens of timm's ``forward_intermediates(norm=True)``, and for
    the last block the very ops of ``net(tiles)``. Raises ``ValueError`` for ``cls`` on a
    network without a class token.
    """
    if "cls" in tokens and getattr(net, "cls_token", None) is None:
        raise ValueError("embed.tokens has cls, but the network has no class token")
    absolute = absolute_blocks(blocks, len(net.blocks))
    outputs: dict[int, torch.Tensor] = {}
    hooks = [
        net.blocks[b].register_forward_hook(lambda _m, _i, out, b=b: outputs.__setitem__(b, out))
        for b in absolute
    ]
    try:
        net.forward_features(tiles)
    finally:
        for hook in hooks:
            hook.remove()
    normed = {b: net.norm(out) for b, out in outputs.items()}
    return torch.cat([_summary(net, normed[b], token) for b in absolute for token in tokens], 1)


def tile_features(net: nn.Module, tiles: torch.Tensor, cfg: EmbedConfig) -> torch.Tensor:
    """Features (B, :func:`feature_width`) of a batch of tiles, in float32.

    :func:`token_summaries` of the tiles, averaged with those of each of ``cfg.flips`` of
    them (test-time augmentation; without flips, the summaries themselves).
    """
    total = token_summaries(net, tiles, cfg.tokens, cfg.blocks).float()
    for flip in cfg.flips:
        flipped = torch.flip(tiles, FLIP_DIMS[flip])
        total = total + token_summaries(net, flipped, cfg.tokens, cfg.blocks).float()
    return total / (1 + len(cfg.flips))
