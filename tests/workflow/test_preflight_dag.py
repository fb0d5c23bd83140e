"""The preflight runs before preprocessing, and a rerun of it reruns no plate (dry runs)."""

import os
import re
import time
from pathlib import Path

from .conftest import TINY, snakemake

PLATE = "src01_b01_p01"


def illum_config(folder: Path) -> Path:
    path = folder / "illum.yaml"
    path.write_text("preprocess:\n  illum: compute\n")
    return path


def rule_edges(dot: str) -> set[tuple[str, str]]:
    """(upstream, downstream) rule names of a ``--rulegraph`` graph."""
    labels = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.M))
    return {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)$", dot, re.M)}


def test_preflight_is_upstream_of_preprocessing(tmp_path: Path) -> None:
    res = snakemake(tmp_path, "--rulegraph", configfiles=(TINY, illum_config(tmp_path)))
    assert res.returncode == 0, res.stderr
    edges = rule_edges(res.stdout)
    assert {
        ("render_synthetic_plate", "preflight"),
        ("render_synthetic_metadata", "preflight"),
        ("preflight", "preprocess_plate"),
        ("preflight", "compute_illum"),
        ("preprocess_plate", "pretrain"),
    } <= edges
    validate = snakemake(tmp_path, "--dry-run", "validate", configfiles=(TINY,))
    assert validate.returncode == 0, validate.stderr
    jobs = re.findall(r"^rule (\w+):", validate.stdout, re.M)
    rule_names = ("render_synthetic_plate", "render_synthetic_metadata", "preflight", "validate")
    assert set(jobs) == set(rule_names)


def make_old(files: list[Path], folders: list[Path]) -> None:
    """Create empty files and folders, all dated 1000 s ago."""
    then = time.time() - 1000
    for folder in folders:
        folder.mkdir(parents=True)
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    for path in [*files, *folders]:
        os.utime(path, (then, then))


def test_a_newer_preflight_table_reruns_no_plate(tmp_path: Path) -> None:
    synthetic = tmp_path / "resources/synthetic"
    plates = [f"src0{s}_b0{b}_p01" for s in range(1, 5) for b in (1, 2)]
    make_old(
        files=[
            synthetic / "metadata.parquet",
            synthetic / "truth.parquet",
            *(synthetic / p / "load_data.csv" for p in plates),
            tmp_path / f"results/illum/{PLATE}/illum.npy",
            tmp_path / f"results/images/{PLATE}/manifest.parquet",
        ],
        folders=[
            *(synthetic / p / "images" for p in plates),
            tmp_path / f"results/images/{PLATE}/sites",
        ],
    )
    table = tmp_path / "results/qc/preflight.tsv"
    table.parent.mkdir(parents=True)
    table.touch()  # newer than the plate's outputs: they stay up to date (ancient input)
    configs = (TINY, illum_config(tmp_path))
    # mtime only: these hand-made files have no provenance records for the other triggers
    dry_run = (f"results/images/{PLATE}/manifest.parquet", "--dry-run", "--rerun-triggers", "mtime")
    res = snakemake(tmp_path, *dry_run, configfiles=configs)
    assert res.returncode == 0, res.stderr
    assert "Nothing to be done" in res.stdout + res.stderr, res.stdout
    os.utime(synthetic / "metadata.parquet")  # newer than the table: the preflight reruns
    res = snakemake(tmp_path, *dry_run, configfiles=configs)
    assert res.returncode == 0, res.stderr
    assert re.findall(r"^rule (\w+):", res.stdout, re.M) == ["preflight"], res.stdout
