"""Workflow-level tests: DAG, linters, config validation and tiny end-to-end CPU runs."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.layout import plate_sheet, render_metadata
from paintssl.synthetic.plate import render_plate

from .conftest import REPO, TINY, Runner, snakemake

BIN = Path(sys.executable).parent


def test_dry_run_plans_every_stage(run_snakemake: Runner) -> None:
    res = run_snakemake("--dry-run")
    assert res.returncode == 0, res.stderr
    rules = ["render_synthetic_plate", "preprocess_plate", "pretrain", "embed_plate"]
    rules += ["measure_cellprofiler", "normalize_profiles", "aggregate_profiles", "evaluate_model"]
    for rule in rules:
        assert rule in res.stdout
    assert "preprocess_plate                16" in res.stdout  # one job per synthetic plate


def test_lint_and_format() -> None:
    lint = subprocess.run([BIN / "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "good condition" in lint.stdout + lint.stderr
    fmt = subprocess.run([BIN / "snakefmt", "--check", "."], cwd=REPO, capture_output=True)
    assert fmt.returncode == 0, fmt.stderr


def test_unknown_config_key_is_rejected(run_snakemake: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed:\n  n_shard: 2\n")
    res = run_snakemake("--dry-run", configfiles=(bad,))
    assert res.returncode != 0
    assert "n_shard" in res.stdout + res.stderr


def test_plates_without_metadata_is_rejected(run_snakemake: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("plates: plates.tsv\n")
    res = run_snakemake("--dry-run", configfiles=(bad,))
    assert res.returncode != 0
    assert "metadata" in res.stdout + res.stderr


def eval_rows(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t")
    assert {"metric", "level", "value"} <= set(table.columns)
    return table


@pytest.mark.slow
def test_tiny_run_end_to_end_and_rerun_does_nothing(run_snakemake: Runner) -> None:
    res = run_snakemake(configfiles=(TINY,))
    assert res.returncode == 0, res.stderr[-4000:]
    workdir = Path(res.args[res.args.index("--directory") + 1])
    table = eval_rows(workdir / "results/eval/random_vits.tsv")
    metrics = set(table["metric"])
    assert any("perturbation" in m for m in metrics), metrics
    assert any("target" in m for m in metrics), metrics
    manifest = pd.read_parquet(workdir / "results/images/src01_b01_p01/manifest.parquet")
    assert len(manifest) == 96 * 2
    for output in ("eval/summary.tsv", "figures/map_vs_nsb.png", "figures/umap.pdf"):
        assert (workdir / "results" / output).stat().st_size > 0, output
    again = run_snakemake("--dry-run", configfiles=(TINY,))
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
    report = run_snakemake("--report", "results/report.html", configfiles=(TINY,))
    assert report.returncode == 0, report.stderr[-4000:]
    assert (workdir / "results/report.html").stat().st_size > 0


@pytest.mark.slow
def test_own_data_needs_only_plates_and_metadata(tmp_path: Path) -> None:
    """A JUMP-style dataset elsewhere on disk, referenced by `plates` and `metadata` only."""
    data = tmp_path / "mydata"
    cfg = SyntheticConfig(**{**yaml.safe_load(TINY.read_text())["synthetic"], "seed": 7})
    sheet = plate_sheet(cfg, data).query(
        "plate.str.startswith('src01') or plate.str.startswith('src02')"
    )
    for plate in sheet["plate"]:
        render_plate(cfg, plate, data / plate / "load_data.csv", data / plate / "images")
    sheet = sheet.assign(load_data=[f"{p}/load_data.csv" for p in sheet["plate"]])
    sheet.to_csv(data / "plates.tsv", sep="\t", index=False)
    render_metadata(cfg, data / "wells.parquet", data / "truth.parquet")
    pd.read_parquet(data / "wells.parquet").to_csv(data / "wells.csv", index=False)
    mine = tmp_path / "my.yaml"
    mine.write_text(f"plates: {data / 'plates.tsv'}\nmetadata: {data / 'wells.csv'}\n")
    workdir = tmp_path / "run"
    res = snakemake(workdir, "results/eval/random_vits.tsv", configfiles=(TINY, mine))
    assert res.returncode == 0, res.stderr[-4000:]
    assert not (workdir / "resources/synthetic").exists()
    assert len(eval_rows(workdir / "results/eval/random_vits.tsv")) > 0
    plates = pd.read_parquet(workdir / "results/profiles/random_vits/well.parquet")[
        "Metadata_Plate"
    ]
    assert set(plates) == set(sheet["plate"])
