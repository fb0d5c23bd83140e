"""timm backbone factory and the exported-weights format shared by pretraining and embedding.

An exported ``weights.pt`` holds only tensors and primitive types, so it loads with
``torch.load(weights_only=True)``::

    {"backbone": str, "in_chans": int, "img_size": int, "channels": list[str],
     "mean": list[float], "std": list[float], "state_dict": {name: tensor}}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from paintssl.tables import atomic_path

EXPORT_KEYS = ("backbone", "in_chans", "img_size", "channels", "mean", "std", "state_dict")


def create_backbone(name: str, img_size: int, in_chans: int = 5, **kwargs: object) -> nn.Module:
    """Build a timm ViT with random weights (never downloads), returning pooled features.

    Parameters
    ----------
    name : timm model name, e.g. ``vit_small_patch16_224``.
    img_size : side of the square input tiles.
    in_chans : number of image channels.
    **kwargs : passed to ``timm.create_model`` (e.g. ``patch_size``, ``drop_path_rate``).
    """
    return timm.create_model(
        name, pretrained=False, in_chans=in_chans, num_classes=0, img_size=img_size, **kwargs
    )


def vit_tokens(
    model: nn.Module,
    images: torch.Tensor,
    keep: torch.Tensor | None = None,
    masked: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-level forward of a timm ViT: final-normed tokens (B, prefix + patches, D).

    The adapter that MAE (masking) and DINO (96 px local crops on a 224 px model) need.
    On full ``img_size`` inputs it equals ``model.forward_features``; other sizes get
    interpolated position embeddings. ``keep`` (B, K) selects the patch tokens that enter
    the blocks (MAE's visible patches), in the given order. Pool the result with
    ``model.forward_head(tokens, pre_logits=True)``, as the embed stage does. ``masked``
    (B, patches) bool replaces those patch embeddings by ``mask_token`` (D,) before the
    position embeddings are added (iBOT's masked image modelling).
    """
    if getattr(model, "reg_token", None) is not None or getattr(model, "no_embed_class", True):
        raise ValueError("vit_tokens supports timm ViTs with a class token and no register tokens")
    patches = model.patch_embed.proj(images)  # (B, D, h, w)
    grid = tuple(patches.shape[-2:])
    tokens = model.patch_embed.norm(patches.flatten(2).transpose(1, 2))
    if masked is not None:
        tokens = torch.where(masked[..., None], mask_token.to(tokens.dtype), tokens)
    n_prefix = model.num_prefix_tokens
    pos = model.pos_embed
    if grid != tuple(model.patch_embed.grid_size):
        pos = resample_abs_pos_embed(
            pos, new_size=grid, old_size=model.patch_embed.grid_size, num_prefix_tokens=n_prefix
        )
    tokens = tokens + pos[:, n_prefix:]
    if keep is not None:
        tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
    if model.cls_token is not None:
        prefix = model.cls_token.expand(len(images), -1, -1) + pos[:, :n_prefix]
        tokens = torch.cat([prefix, tokens], dim=1)
    tokens = model.norm_pre(model.pos_drop(tokens))
    return model.norm(model.blocks(tokens))


@dataclass(frozen=True)
class ExportedModel:
    """A backbone rebuilt from ``weights.pt`` plus the facts needed to feed it."""

    model: nn.Module
    img_size: int
    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def export_weights(
    path: str | Path,
    backbone: nn.Module,
    name: str,
    img_size: int,
    channels: list[str] | tuple[str, ...],
    mean: list[float] | tuple[float, ...],
    std: list[float] | tuple[float, ...],
    backbone_kwargs: dict | None = None,
) -> None:
    """Write the backbone-only ``weights.pt`` atomically (temp file, then rename)."""
    if not (len(channels) == len(mean) == len(std)):
        raise ValueError(f"channels, mean and std differ in length: {channels}, {mean}, {std}")
    state = {
        "backbone": name,
        "backbone_kwargs": dict(backbone_kwargs or {}),
        "in_chans": len(channels),
        "img_size": int(img_size),
        "channels": [str(c) for c in channels],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "state_dict": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_exported(path: str | Path, map_location: str = "cpu") -> ExportedModel:
    """Rebuild the backbone from ``weights.pt``; a malformed file gives an error naming it."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor payloads
        raise ValueError(
            f"{path}: not a loadable paintssl weights file ({type(err).__name__}); use the "
            f"weights.pt that the pretrain rule exported, or rerun it (snakemake --forcerun "
            f"pretrain)"
        ) from err
    missing = [k for k in EXPORT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(
            f"{path}: not a paintssl weights file, it lacks the keys {missing} (a raw "
            f"state_dict or training checkpoint?); use the weights.pt that the pretrain rule "
            f"exported (paintssl.pretrain.backbones.export_weights)"
        )
    model = create_backbone(
        state["backbone"],
        img_size=state["img_size"],
        in_chans=state["in_chans"],
        **state.get("backbone_kwargs", {}),
    )
    model.load_state_dict(state["state_dict"], strict=True)
    return ExportedModel(
        model=model.eval(),
        img_size=int(state["img_size"]),
        channels=tuple(state["channels"]),
        mean=tuple(state["mean"]),
        std=tuple(state["std"]),
    )


def resolve_device(gpus: int) -> str:
    """``cuda`` when the job was given GPUs and CUDA is usable, else ``cpu`` (with a warning)."""
    if gpus and torch.cuda.is_available():
        return "cuda"
    if gpus:
        logging.getLogger(__name__).warning("job asked for %d GPU(s) but CUDA is unavailable", gpus)
    return "cpu"
