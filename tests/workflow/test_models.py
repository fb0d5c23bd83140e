"""Dry runs: each model method is routed to its own rules (tiny config, no job runs)."""

import re
from pathlib import Path

import pandas as pd

from .conftest import TINY, Runner

NETWORK_RULES = {"pretrain", "embed_plate", "embed_shard", "gather_embeddings"}
NETWORK_RULES |= {"plot_training_curves"}
EMBED_RULES = {"embed_random_features", "measure_cellprofiler", "import_external_profiles"}
EMBED_RULES |= NETWORK_RULES | {"embed_oracle"}


def job_counts(output: str) -> dict[str, int]:
    """Rule -> planned jobs, from the "Job stats" table of ``snakemake -n --quiet rules``."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def dry_run(run: Runner, *args: str, configfiles: tuple[Path, ...] = ()) -> dict[str, int]:
    res = run(*args, "--dry-run", "--quiet", "rules", configfiles=(TINY, *configfiles))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return job_counts(res.stdout + res.stderr)


def test_default_run_plans_random_features_beside_the_networks(run_snakemake: Runner) -> None:
    counts = dry_run(run_snakemake)
    assert counts["embed_random_features"] == 8  # one job per tiny plate
    assert counts["pretrain"] == 5  # random_tiny, dino, mae, simclr, sslprofiler
    assert counts["embed_plate"] == 5 * 8  # one job per network model and plate
    assert counts["measure_cellprofiler"] == 8  # the CellProfiler baseline, one CPU job per plate
    assert counts["embed_oracle"] == 8  # the ceiling: the ground truth of every well
    assert counts["evaluate_model"] == 8
    assert counts["plot_training_curves"] == 4
    assert "ablation" not in counts  # its variants are not run models


def test_ablation_variants_and_a_model_on_another_models_weights(run_snakemake: Runner) -> None:
    ablation = Path(__file__).parents[2] / "config/ablation.yaml"
    counts = dry_run(run_snakemake, configfiles=(ablation,))
    assert counts["pretrain"] == 8  # + no_cross, no_agg, no_aug; no_post: sslprofiler_tiny's
    assert counts["embed_plate"] == 9 * 8
    assert counts["plot_training_curves"] == 7
    assert counts["ablation"] == 1
    res = run_snakemake("--dry-run", "--printshellcmds", "results/embeddings/"
                        "sslprofiler_tiny_no_post/src01_b01_p01.parquet",
                        configfiles=(TINY, ablation))  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "results/pretrain/sslprofiler_tiny/weights.pt" in res.stdout
    assert "results/pretrain/sslprofiler_tiny_no_post" not in res.stdout


def test_random_features_need_no_pretraining(run_snakemake: Runner) -> None:
    counts = dry_run(run_snakemake, "results/eval/random_features.tsv")
    assert counts["embed_random_features"] == 8
    assert counts["preprocess_plate"] == 8  # the manifests give the wells and their counts
    assert not NETWORK_RULES & set(counts), counts


def test_oracle_needs_only_the_ground_truth_and_the_manifests(run_snakemake: Runner) -> None:
    counts = dry_run(run_snakemake, "results/eval/oracle.tsv")
    assert counts["render_synthetic_metadata"] == 1  # truth.parquet
    assert counts["preprocess_plate"] == 8  # the manifests give the wells and their counts
    assert counts["embed_oracle"] == 8  # one job per tiny plate
    assert not (EMBED_RULES - {"embed_oracle"}) & set(counts), counts
    assert set(counts) == {
        "render_synthetic_metadata", "render_synthetic_plate", "preflight", "preprocess_plate",
        "validate_metadata", "embed_oracle", "normalize_profiles", "aggregate_profiles",
        "evaluate_model",
    }  # fmt: skip


def own_plates(folder: Path) -> Path:
    """A config of two plates of the user's own (a dry run reads no file but the sheet)."""
    folder.mkdir()
    for plate in ("p1", "p2"):
        (folder / plate).mkdir()
        (folder / plate / "load_data.csv").write_text("")
    (folder / "plates.tsv").write_text(
        "plate\tbatch\tsource\tload_data\n"
        "p1\tb1\ts1\tp1/load_data.csv\np2\tb1\ts1\tp2/load_data.csv\n"
    )
    (folder / "wells.csv").write_text("")
    mine = folder / "my.yaml"
    mine.write_text(f"plates: {folder / 'plates.tsv'}\nmetadata: {folder / 'wells.csv'}\n")
    return mine


def test_oracle_is_left_out_of_the_run_and_refused_for_own_plates(
    run_snakemake: Runner, tmp_path: Path
) -> None:
    mine = own_plates(tmp_path / "mydata")
    res = run_snakemake("--dry-run", "--quiet", "rules", configfiles=(TINY, mine))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "run_models: leaving out oracle" in res.stdout + res.stderr
    counts = job_counts(res.stdout + res.stderr)
    assert "embed_oracle" not in counts
    assert "render_synthetic_metadata" not in counts
    assert counts["evaluate_model"] == 7  # every other run model
    asked = run_snakemake("--dry-run", "results/eval/oracle.tsv", configfiles=(TINY, mine))
    assert asked.returncode != 0
    assert "exists only for the built-in synthetic dataset" in asked.stdout + asked.stderr


def test_external_profiles_need_no_images(run_snakemake: Runner, tmp_path: Path) -> None:
    pd.DataFrame({"Metadata_Plate": ["p"], "Metadata_Well": ["A01"], "f": [1.0]}).to_csv(
        tmp_path / "cp.csv", index=False
    )
    extra = tmp_path / "external.yaml"
    extra.write_text(
        "models:\n  jump_cellprofiler:\n    method: external\n    profiles: cp.csv\n"
        "    profile_steps: [mad, drop_nonfinite]\n"
        "run_models: [random_vits, jump_cellprofiler]\n"
    )
    counts = dry_run(run_snakemake, "results/eval/jump_cellprofiler.tsv", configfiles=(extra,))
    assert counts["import_external_profiles"] == 1  # one job writes every evaluation plate
    assert counts["normalize_profiles"] == 1
    assert not {"preprocess_plate", "embed_random_features", "embed_oracle"} & set(counts), counts
    assert not NETWORK_RULES & set(counts), counts
    everything = dry_run(run_snakemake, configfiles=(extra,))
    assert everything["pretrain"] == 1  # random_vits only: no training curves, no pretrain
    assert "plot_training_curves" not in everything


def test_cellprofiler_features_are_measured_per_plate_without_a_network(
    run_snakemake: Runner,
) -> None:
    counts = dry_run(run_snakemake, "results/eval/cellprofiler.tsv")
    assert counts["measure_cellprofiler"] == 8  # one CPU job per tiny plate
    assert counts["preprocess_plate"] == 8
    assert not NETWORK_RULES & set(counts), counts


def test_misconfigured_models_fail_the_dry_run(run_snakemake: Runner, tmp_path: Path) -> None:
    cases = {
        "models:\n  cp:\n    method: external\n": "'profiles' is a required property",
        "models:\n  dino_tiny:\n    profile_steps: [whiten]\n": "valid steps: variance",
        "models:\n  rf:\n    method: random_features\n    backbone: vit_tiny_patch16_224\n": (
            "builds no network"
        ),
        "models:\n  dino_tiny:\n    weights_from: cellprofiler\n": (
            "'cellprofiler' is not a model that trains its own network"
        ),
        "models:\n  dino_tiny:\n    weights_from: mae_tiny\n": "a model of another method",
    }
    for i, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.yaml"
        bad.write_text(text)
        res = run_snakemake("--dry-run", configfiles=(TINY, bad))
        assert res.returncode != 0, text
        assert message in res.stdout + res.stderr, text
