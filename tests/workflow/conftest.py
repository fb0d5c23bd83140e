"""Helpers to drive the real Snakemake CLI from a temporary working directory."""

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TINY = REPO / "tests/data/tiny.yaml"

Runner = Callable[..., subprocess.CompletedProcess]


def snakemake_command(workdir: Path, *args: str, configfiles: tuple[Path, ...] = ()) -> list[str]:
    """The snakemake command line for the repository's workflow in ``workdir``."""
    return [
        SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--workflow-profile", str(REPO / "profiles/ci"),
        *args,
        "--configfile", str(REPO / "config/config.yaml"), *map(str, configfiles),
    ]  # fmt: skip


def snakemake(
    workdir: Path, *args: str, configfiles: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's workflow in ``workdir`` (targets go in ``args``)."""
    cmd = snakemake_command(workdir, *args, configfiles=configfiles)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1500)


@pytest.fixture
def run_snakemake(tmp_path: Path) -> Runner:
    """``run_snakemake(*args, configfiles=...)`` in a fresh working directory."""

    def run(*args: str, configfiles: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
        return snakemake(tmp_path, *args, configfiles=configfiles)

    return run


JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
Job = tuple[str, str]  # rule, its wildcards as printed ("" for none)


def planned_jobs(output: str) -> set[Job]:
    """The jobs a ``--dry-run`` prints, as (rule, "name=value, ...") pairs."""
    jobs: list[list[str]] = []
    for line in output.splitlines():
        if header := JOB_HEADER.match(line.strip()):
            jobs.append([header.group(1), ""])
        elif jobs and line.strip().startswith("wildcards: "):
            jobs[-1][1] = line.strip().removeprefix("wildcards: ")
    return {(rule, wildcards) for rule, wildcards in jobs}


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` layered over ``base`` as Snakemake layers its config files."""
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = deep_merge(base[key], value) if both else value
    return merged


def resolved_config(*configfiles: Path) -> dict:
    """config/config.yaml with ``configfiles`` layered over it, as the workflow sees it."""
    config: dict = {}
    for path in (REPO / "config/config.yaml", *configfiles):
        config = deep_merge(config, yaml.safe_load(path.read_text()))
    return config
