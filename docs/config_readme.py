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
    return HEADER + "\n".join(rows(schema)) + "\n"


if __name__ == "__main__":
    (REPO / "config/README.md").write_text(render())
