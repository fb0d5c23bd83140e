"""Regenerate config/README.md from the descriptions in workflow/schemas/config.schema.yaml."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HEADER = """# Configuring paintssl

Edit `config/config.yaml`, or layer your own file over it:
`snakemake --configfile config/config.yaml my.yaml`. Every key below is checked by
`workflow/schemas/config.schema.yaml` (unknown keys are errors). This page is generated from that
schema by `python docs/config_readme.py`; a test keeps the two in step.

| key | default | description |
|---|---|---|
"""


FOOTER = """
## Training recipes: units, schedules and the reference values

- **Schedules.** Every warm-up is given in epochs (the papers' unit) or as a fraction of the run
  (`train.warmup_epochs` or `train.warmup_fraction`; DINO's `warmup_teacher_temp_epochs` or
  `warmup_teacher_temp_fraction`, `freeze_last_layer_epochs` or `freeze_last_layer_fraction`;
  one of each pair). Fractions keep one recipe for a 300-step run and a 200-epoch run: the
  paper's 200-epoch DINO is lr warm-up 0.1, teacher-temperature warm-up 0.15 and last layer
  frozen 0.005 of the run. The teacher's EMA momentum and the lr and weight-decay cosines always
  span the whole run. The `*_vits` entries keep the paper's values in epochs; the tiny entries
  use fractions.
- **Last-layer freezing.** DINO's code and paper freeze the head's last layer for the first
  epoch (`freeze_last_layer=1`); Kim et al.'s code uses 3 epochs. We follow DINO: 1 epoch
  (`freeze_last_layer_epochs: 3` gives the authors' choice).
- **DINO details, as facebookresearch/dino:** gradients clipped per parameter to norm 3.0
  (`utils.clip_gradients`; `train.clip_grad_per_param: false` clips one global norm); weight
  decay on every tensor but biases and 1-d ones, so `cls_token` and `pos_embed` are decayed
  (`train.decay_tokens: false` exempts them); the head's last layer keeps `nn.Linear`'s default
  init, weight-normed with its scale fixed at 1 (`norm_last_layer: false` learns the scale);
  softmax and loss in fp32 under bf16 autocast.
- **MAE, as facebookresearch/mae:** `train.batch_size` counts crops (the paper's 1024 = 256
  sites x 4 crops) and the lr scales with crops (1.5e-4 per 256); fixed 2-D sin-cos position
  embeddings in encoder and decoder (`fixed_pos_embed`); decoder blocks with a qkv bias
  (`decoder_qkv_bias`). Features: the mean of the patch tokens after the encoder's final
  LayerNorm (CLS excluded; no extra `fc_norm`).
- **SimCLR:** projector Linear(384, 512)-ReLU-Linear(512, 128), the authors' width.
- **Collapse guard** (`train.collapse`): `teacher_information_norm` (DINO: how much the teacher's
  output depends on its input, 0 when every crop gets the same distribution) or
  `embedding_std` below its limit for `patience` logged steps stops the run naming the model,
  step and metric (`policy: error`) or warns once (`policy: warn`); the training-curve figure
  shows the verdict.
- **Embedding precision:** `embed.precision` fp32 (default) or bf16 autocast.
- **Site cache:** `train.site_cache_mb` (default 2048) keeps decoded training sites (image and
  cell mask) in memory, per rank, shared out among its DataLoader workers, so each site's TIFF
  is read once rather than once per view; 0 reads every time. The views are unchanged.
"""


def rows(schema: dict, prefix: str = "") -> list[str]:
    """One table row per key, depth first (a key with no default is required or optional)."""
    out = []
    required = set(schema.get("required", []))
    for key, spec in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        absent = "required" if key in required else "optional"
        default = f"`{spec['default']}`" if "default" in spec else absent
        description = " ".join(spec.get("description", "").split())
        out.append(f"| `{name}` | {default} | {description} |")
        out += rows(spec, f"{name}.")
        out += rows(spec.get("additionalProperties") or {}, f"{name}.<name>.")
    return out


def render() -> str:
    """The README text for the current schema."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    return HEADER + "\n".join(rows(schema)) + "\n" + FOOTER


if __name__ == "__main__":
    (REPO / "config/README.md").write_text(render())
