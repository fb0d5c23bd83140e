"""Training throughput (images/s), model FLOPs per image and MFU of each SSL objective.

Feeds random views of the right shapes (no disk I/O), so it measures the model step only::

    python -m bench.bench_train --backbone vit_small_patch16_224 --img-size 224 \
        --batch-size 8 --steps 3 [--device cuda --peak-tflops 989]
    python -m bench.bench_train --img-size 56 --backbone-kwargs '{"patch_size": 8}'
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from paintssl.pretrain.backbones import create_backbone
from paintssl.pretrain.objectives import OBJECTIVES, build_objective
from paintssl.pretrain.trainer import param_groups


def random_views(objective, batch: int, device: torch.device) -> list[torch.Tensor]:
    """One batch of views with the shapes ``objective.view_transform()`` produces."""
    image = torch.rand(5, 2 * objective.img_size, 2 * objective.img_size)
    views = objective.view_transform()(
        image, torch.ones(image.shape[1:], dtype=torch.bool), torch.Generator()
    )
    return [torch.randn(batch, *v.shape, device=device) for v in views]


def train_step(objective, opt, views, amp: bool, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = objective(views).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench(method: str, args: argparse.Namespace) -> dict:
    """Seconds per step, images/s, training FLOPs per image and MFU for ``method``."""
    device = torch.device(args.device)
    kwargs = json.loads(args.backbone_kwargs)
    backbone = create_backbone(
        args.backbone, img_size=args.img_size, **kwargs, **OBJECTIVES[method].backbone_kwargs
    )
    params = json.loads(args.method_params).get(method, {})
    objective = build_objective(method, backbone, params).to(device).train()
    opt = torch.optim.AdamW(param_groups(objective), lr=1e-4)
    views = random_views(objective, args.batch_size, device)
    amp = device.type == "cuda"
    with FlopCounterMode(display=False) as counter:
        train_step(objective, opt, views, amp, device)
    for _ in range(args.warmup):
        train_step(objective, opt, views, amp, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(objective, opt, views, amp, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    flops_per_image = counter.get_total_flops() / args.batch_size
    result = {
        "method": method,
        "backbone": args.backbone,
        "img_size": args.img_size,
        "batch_size": args.batch_size,
        "device": str(device),
        "s_per_step": round(seconds, 4),
        "images_per_s": round(args.batch_size / seconds, 2),
        "train_gflops_per_image": round(flops_per_image / 1e9, 3),
    }
    if args.peak_tflops:
        result["mfu"] = round(
            flops_per_image * args.batch_size / seconds / (args.peak_tflops * 1e12), 4
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=sorted(OBJECTIVES))
    parser.add_argument("--backbone", default="vit_tiny_patch16_224")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--backbone-kwargs", default="{}", help='JSON, e.g. {"patch_size": 8}')
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak for MFU")
    parser.add_argument("--method-params", default="{}", help='JSON {"dino": {...}, ...}')
    args = parser.parse_args()
    for method in args.methods:
        print(json.dumps(bench(method, args)), flush=True)


if __name__ == "__main__":
    main()
