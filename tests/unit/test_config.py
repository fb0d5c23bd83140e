"""The shipped configuration, its schema, its README and the env files stay in step."""

import builtins
import importlib
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs"))
config_readme = importlib.import_module("config_readme")


def test_config_readme_is_generated_from_the_schema() -> None:
    assert (REPO / "config/README.md").read_text() == config_readme.render(), (
        "config/README.md is stale: run `python docs/config_readme.py`"
    )


def test_every_schema_key_has_a_description() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    missing = [row for row in config_readme.rows(schema) if row.endswith("|  |")]
    assert not missing


def test_env_files_pin_the_same_versions_as_the_lock() -> None:
    from rattler import MatchSpec

    lock = dict(
        line.strip().lower().split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    for env in sorted((REPO / "workflow/envs").glob("*.yaml")):
        spec = yaml.safe_load(env.read_text())
        conda = [d for d in spec["dependencies"] if isinstance(d, str)]
        for dep in conda:
            MatchSpec(dep, strict=True)  # parses as a conda spec
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        for requirement in pip:
            name, version = requirement.lower().split("==")
            assert lock.get(name) == version, f"{env.name}: {requirement} differs from the lock"


def test_package_imports_without_snakemake(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def blocked(name: str, *args: object, **kwargs: object) -> object:
        if name == "snakemake" or name.startswith("snakemake."):
            raise ImportError("snakemake is blocked in this test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    for name in [m for m in sys.modules if m == "paintssl" or m.startswith("paintssl.")]:
        monkeypatch.delitem(sys.modules, name)
    for module in sorted((REPO / "src/paintssl").rglob("*.py")):
        dotted = ".".join(module.relative_to(REPO / "src").with_suffix("").parts)
        importlib.import_module(dotted.removesuffix(".__init__"))
