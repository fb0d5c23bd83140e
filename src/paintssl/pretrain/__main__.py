"""``python -m paintssl.pretrain --config train_config.yaml``: one pretraining run, torchrun-ready.

The YAML holds the keyword arguments of :func:`paintssl.pretrain.run.pretrain`, ``model``
as the plain mapping of one ``config["models"]`` entry.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch.distributed as dist
import yaml

from paintssl.pretrain.run import ModelConfig, pretrain


def main(argv: list[str] | None = None) -> None:
    """Parse ``--config``, run :func:`~paintssl.pretrain.run.pretrain`, leave the group."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="resolved pretrain YAML")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    kwargs = yaml.safe_load(args.config.read_text())
    pretrain(**kwargs | {"model": ModelConfig(**kwargs["model"])})
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
