"""Workflow-level tests: DAG, linters, config validation and tiny end-to-end CPU runs."""

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from paintssl.evaluate.batch import GC_KS, LISI_KS
from paintssl.preprocess.plate import PreprocessConfig, preprocess_plate
from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.layout import plate_sheet, render_metadata
from paintssl.synthetic.plate import render_plate
from paintssl.tables import BATCH, SOURCE

from .conftest import (
    REPO,
    TINY,
    Job,
    Runner,
    planned_jobs,
    resolved_config,
    snakemake,
    snakemake_command,
)

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
    assert {"metric", "level", "setting", "variant", "value"} <= set(table.columns)
    return table


CELL_LINES = ("A549", "U2OS")
METRICS = {  # every numeric metric of results/eval/<model>.tsv, once per cell line
    *(f"{effect}_graph_connectivity_k{k}" for effect in ("batch", "source") for k in GC_KS),
    *(f"{effect}_lisi_k{k}" for effect in ("batch", "source") for k in LISI_KS),
    *("batch_silhouette", "source_silhouette", "median_replicate_correlation"),
    *("perturbation_map", "target_map", "cross_source_map", "gene_family_map"),
    *("gene_family_ami", "nsb_accuracy", "nsb_accuracy_authors", "percent_replicating"),
    *("nsbp_gene_family_accuracy", "nsbp_target_accuracy"),
}
TRANSFER_METRICS = ("transfer_accuracy", "transfer_macro_f1")  # once per train -> test pair
TRANSFER_SETTINGS = tuple(f"{train}->{test}" for train in CELL_LINES for test in CELL_LINES)
CHANCE = ("random_features", "shuffled_labels")  # the chance variants of a retrieval metric


def check_eval_tables(results: Path, models: list[str]) -> None:
    """Every metric row of every model is there and finite; every model beats its chance."""
    retrieval: dict[str, float] = {}
    for model in models:
        table = eval_rows(results / f"eval/{model}.tsv")
        observed = table.query("variant == 'observed' and setting != 'all'")
        rows = set(zip(observed["metric"], observed["setting"], strict=True))
        expected = {(m, c) for m in METRICS for c in CELL_LINES}
        expected |= {(m, s) for m in TRANSFER_METRICS for s in TRANSFER_SETTINGS}
        assert rows == expected, (model, rows ^ expected)
        assert np.isfinite(observed["value"]).all(), model
        for metric in ("perturbation_map", "target_map"):
            values = table.query("metric == @metric").pivot_table(
                index="setting", columns="variant", values="value"
            )
            if model != "random_features":  # the chance level itself
                beaten = values["observed"] > values[list(CHANCE)].max(axis=1)
                assert beaten.all(), (model, metric, values)
        retrieval[model] = table.query("metric == 'perturbation_map' and variant == 'observed'")[
            "value"
        ].mean()
    assert max(retrieval, key=retrieval.get) == "oracle", retrieval
    assert min(retrieval, key=retrieval.get) == "random_features", retrieval


REPORTED = re.compile(
    r'"(results/[^"]+)": \{"name": "[^"]+", .*?"data_uri": "data:[^"]*?;base64,([A-Za-z0-9+/=]*)"',
    re.DOTALL,
)


def check_report(report: Path, results: Path, models: list[str], trained: list[str]) -> None:
    """The report embeds every table and figure, byte for byte as the run wrote them."""
    embedded = {path: base64.b64decode(data) for path, data in REPORTED.findall(report.read_text())}
    expected = {f"results/eval/{m}.tsv" for m in models}
    expected |= {f"results/eval/{name}.tsv" for name in ("summary", "wilcoxon", "comparison")}
    expected |= {f"results/figures/gene_families/{m}.png" for m in models}
    expected |= {f"results/figures/training/{m}.png" for m in trained}
    expected |= {f"results/figures/{name}.png" for name in ("umap", "map_vs_nsb", "f1_at_k")}
    assert set(embedded) == expected, set(embedded) ^ expected
    for path, data in embedded.items():
        assert data == (results.parent / path).read_bytes(), path


def kill_while_preprocessing(workdir: Path) -> None:
    """Start the tiny run and SIGKILL it (and its jobs) once Snakemake took a plate as done."""
    cmd = snakemake_command(workdir, configfiles=(TINY,))
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while not finished_plates(workdir):
        assert run.poll() is None, "the run ended before any plate was preprocessed"
        assert time.monotonic() < deadline, "no plate was preprocessed in 10 min"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)


def finished_plates(workdir: Path) -> set[str]:
    """Plates whose manifest exists and is not marked as being written (Snakemake's marker)."""
    manifests = list(workdir.glob("results/images/*/manifest.parquet"))  # before the markers
    markers = [m for m in (workdir / ".snakemake/incomplete").glob("*") if m.is_file()]
    incomplete = {base64.urlsafe_b64decode(m.name).decode() for m in markers}
    return {m.parent.name for m in manifests if str(m.relative_to(workdir)) not in incomplete}


def plate_jobs(rule: str, plates: list[str], model: str | None = None) -> set[Job]:
    prefix = f"model={model}, " if model else ""
    return {(rule, f"{prefix}plate={plate}") for plate in plates}


def model_jobs(rules: tuple[str, ...], models: list[str]) -> set[Job]:
    return {(rule, f"model={model}") for rule in rules for model in models}


COMPARISON_JOBS = {(rule, "") for rule in ("compare_models", "plot_map_vs_nsb", "plot_f1_at_k")}


@pytest.mark.slow
def test_tiny_run_killed_rerun_reports_and_partial_reruns(tmp_path: Path) -> None:
    """One tiny run serves every end-to-end check (see the steps below)."""
    workdir = tmp_path / "run"
    # 1. killed while preprocessing: the plan redoes exactly the unfinished plates
    kill_while_preprocessing(workdir)
    plates = sorted(p.name for p in (workdir / "resources/synthetic").iterdir() if p.is_dir())
    assert len(plates) == 8
    unfinished = sorted(set(plates) - finished_plates(workdir))
    assert 0 < len(unfinished) < len(plates)
    plan = planned_jobs(snakemake(workdir, "--dry-run", configfiles=(TINY,)).stdout)
    assert {job for job in plan if job[0] == "preprocess_plate"} == plate_jobs(
        "preprocess_plate", unfinished
    )
    # 2. the rerun (after the --unlock a kill needs) finishes every stage
    assert snakemake(workdir, "--unlock", configfiles=(TINY,)).returncode == 0
    res = snakemake(workdir, configfiles=(TINY,))
    assert res.returncode == 0, res.stderr[-4000:]
    rerun = unfinished[0]
    check_preprocessing_is_reproducible(workdir, rerun, tmp_path / "again")
    results = workdir / "results"
    models = sorted(p.stem for p in (results / "eval").glob("*.tsv"))
    models = [m for m in models if m not in ("summary", "wilcoxon", "comparison")]
    assert len(models) == 8, models
    check_eval_tables(results, models)
    manifest = pd.read_parquet(results / "images/src01_b01_p01/manifest.parquet")
    assert len(manifest) == 96 * 2
    # 3. nothing changed: nothing to do
    again = snakemake(workdir, "--dry-run", configfiles=(TINY,))
    assert "Nothing to be done" in again.stdout + again.stderr
    # 4. the report embeds every table and figure
    report = snakemake(workdir, "--report", "results/report.html", configfiles=(TINY,))
    assert report.returncode == 0, report.stderr[-4000:]
    trained = ["dino_tiny", "mae_tiny", "simclr_tiny", "sslprofiler_tiny"]
    check_report(results / "report.html", results, models, trained)
    # 5. partial reruns as users do them: exactly the jobs the change touches
    new_lr = tmp_path / "lr.yaml"
    new_lr.write_text("models:\n  dino_tiny:\n    train: {lr: 1.0e-3}\n")
    model_rules = ("pretrain", "plot_training_curves", "normalize_profiles")
    model_rules += ("aggregate_profiles", "evaluate_model", "plot_gene_families")
    assert planned_jobs(snakemake(workdir, "-n", configfiles=(TINY, new_lr)).stdout) == (
        model_jobs(model_rules, ["dino_tiny"]) | plate_jobs("embed_plate", plates, "dino_tiny")
        | COMPARISON_JOBS | {("plot_umap", ""), ("all", "")}
    )  # fmt: skip
    null_size = tmp_path / "null.yaml"
    null_size.write_text("eval:\n  null_size: 500\n")
    assert planned_jobs(snakemake(workdir, "-n", configfiles=(TINY, null_size)).stdout) == (
        model_jobs(("evaluate_model",), models) | COMPARISON_JOBS | {("all", "")}
    )
    # 6. the changed model retrains (weights.pt is not protected) from step 0
    weights = "results/pretrain/dino_tiny/weights.pt"
    retrain = snakemake(workdir, weights, configfiles=(TINY, new_lr))
    assert retrain.returncode == 0, retrain.stderr[-4000:]
    log = (workdir / "logs/pretrain/dino_tiny.log").read_text()
    assert "is from another run (train.lr: None -> 0.001): starting over" in log


def check_preprocessing_is_reproducible(workdir: Path, plate: str, scratch: Path) -> None:
    """The rerun plate's outputs equal an uninterrupted run of the rule's function."""
    config = resolved_config(TINY)
    done = workdir / f"results/images/{plate}"
    manifest = pd.read_parquet(done / "manifest.parquet")
    computed = config["preprocess"]["illum"] == "compute"
    preprocess_plate(
        load_data=workdir / f"resources/synthetic/{plate}/load_data.csv",
        source=manifest[SOURCE].iloc[0],
        batch=manifest[BATCH].iloc[0],
        out_manifest=scratch / "manifest.parquet",
        out_sites=scratch / "sites",
        cfg=PreprocessConfig(**config["preprocess"]),
        channels=config["channels"],
        illum=workdir / f"results/illum/{plate}/illum.npy" if computed else None,
    )
    pd.testing.assert_frame_equal(manifest, pd.read_parquet(scratch / "manifest.parquet"))
    sites = sorted((done / "sites").glob("*.tiff"))  # not Snakemake's timestamp file
    assert [s.name for s in sites] == sorted(s.name for s in (scratch / "sites").glob("*.tiff"))
    for site in sites:
        assert site.read_bytes() == (scratch / "sites" / site.name).read_bytes(), site


@pytest.mark.slow
def test_own_data_needs_only_plates_and_metadata_and_a_new_plate_adds_only_its_jobs(
    tmp_path: Path,
) -> None:
    """A JUMP-style dataset elsewhere on disk, referenced by `plates` and `metadata` only."""
    data = tmp_path / "mydata"
    cfg = SyntheticConfig(**{**yaml.safe_load(TINY.read_text())["synthetic"], "seed": 7})
    sheet = plate_sheet(cfg, data).query(
        "plate.str.startswith('src01') or plate.str.startswith('src02')"
    )
    for plate in sheet["plate"]:
        render_plate(cfg, plate, data / plate / "load_data.csv", data / plate / "images")
    sheet = sheet.assign(load_data=[f"{p}/load_data.csv" for p in sheet["plate"]])
    added, first = sheet.iloc[-1:].assign(split="eval"), sheet.iloc[:-1]
    first.to_csv(data / "plates.tsv", sep="\t", index=False)
    render_metadata(cfg, data / "wells.parquet", data / "truth.parquet")
    pd.read_parquet(data / "wells.parquet").to_csv(data / "wells.csv", index=False)
    mine = tmp_path / "my.yaml"
    mine.write_text(f"plates: {data / 'plates.tsv'}\nmetadata: {data / 'wells.csv'}\n")
    workdir, target = tmp_path / "run", "results/eval/random_vits.tsv"
    res = snakemake(workdir, target, configfiles=(TINY, mine))
    assert res.returncode == 0, res.stderr[-4000:]
    assert not (workdir / "resources/synthetic").exists()
    assert len(eval_rows(workdir / target)) > 0
    plates = pd.read_parquet(workdir / "results/profiles/random_vits/well.parquet")[
        "Metadata_Plate"
    ]
    assert set(plates) == set(first["plate"])
    # a new evaluation plate: its own jobs and the model's profile chain, no retraining
    pd.concat([first, added]).to_csv(data / "plates.tsv", sep="\t", index=False)
    new = added["plate"].tolist()
    plan = planned_jobs(snakemake(workdir, target, "-n", configfiles=(TINY, mine)).stdout)
    profile_rules = ("normalize_profiles", "aggregate_profiles", "evaluate_model")
    assert plan == (
        {("preflight", ""), ("validate_metadata", "")} | plate_jobs("preprocess_plate", new)
        | plate_jobs("embed_plate", new, "random_vits") | model_jobs(profile_rules, ["random_vits"])
    )  # fmt: skip
