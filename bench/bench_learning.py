"""Does pretraining learn? Perturbation mAP of the tiny SSL models vs random-weight baselines.

Runs the real workflow on the built-in synthetic data once per seed (config ``seed`` seeds the
initialisation and the training run) and prints, per method and seed, the perturbation mAP
(batch level, observed, mean over cell lines) and target mAP (consensus level) of the trained
tiny model, of ``random_tiny`` (same architecture, random weights), ``random_vits``,
``random_features`` (chance) and ``oracle`` (the ground truth: the ceiling), the fraction of
the oracle's score the model reaches, and the training throughput in sites per CPU second
(``pretrain`` job CPU time). Pretraining sees the ``train`` plates, the scores are of the
``eval`` plates (``synthetic.eval_plates_per_batch``)::

    python -m bench.bench_learning --workdir /tmp/paintssl_learning --seeds 0 1 2

Images are rendered and preprocessed once in ``<workdir>/data`` and linked into one working
directory per seed. Extra ``--configfile`` s are layered over ``config/config.yaml``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import yaml

from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.layout import plate_sheet

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
METHODS = ("dino", "mae", "simclr")
BASELINES = ("random_tiny", "random_vits", "random_features", "oracle")
"""Same tiny ViT with random weights, the ViT-S/16 with random weights, chance, ceiling."""


def merged_config(configfiles: list[Path]) -> dict:
    """``config/config.yaml`` updated recursively with ``configfiles`` (as Snakemake does)."""

    def update(base: dict, extra: dict) -> dict:
        for key, value in extra.items():
            nested = isinstance(value, dict) and isinstance(base.get(key), dict)
            base[key] = update(base[key], value) if nested else value
        return base

    config: dict = {}
    for path in [REPO / "config/config.yaml", *configfiles]:
        config = update(config, yaml.safe_load(path.read_text()) or {})
    return config


def snakemake(workdir: Path, targets: list[str], configfiles: list[Path], *extra: str) -> None:
    """Run the workflow in ``workdir``; raise with the log tail when it fails."""
    cmd = [
        SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *targets,
        "--directory", str(workdir), "--workflow-profile", str(REPO / "profiles/ci"),
        "--rerun-triggers", "mtime", *extra,
        "--configfile", str(REPO / "config/config.yaml"), *map(str, configfiles),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"snakemake failed in {workdir}:\n{res.stderr[-4000:]}")


def prepare_images(root: Path, config: dict, configfiles: list[Path]) -> None:
    """Render and preprocess the synthetic plates once, in ``root``."""
    sheet = plate_sheet(SyntheticConfig(**config["synthetic"]), "resources/synthetic")
    targets = ["results/images/metadata.parquet"]
    targets += [f"results/images/{plate}/manifest.parquet" for plate in sheet["plate"]]
    snakemake(root, targets, configfiles)


def seed_workdir(root: Path, data: Path, seed: int) -> Path:
    """A working directory for ``seed`` that shares the rendered and preprocessed images."""
    workdir = root / f"seed_{seed}"
    (workdir / "results").mkdir(parents=True, exist_ok=True)
    for name in ("resources", "results/images"):
        path, target = workdir / name, data / name
        if not path.exists():
            path.symlink_to(target, target_is_directory=True)
    return workdir


def read_scores(table: Path) -> dict[str, float]:
    """Perturbation mAP (batch) and target mAP (consensus), observed, mean over cell lines."""
    rows = pd.read_csv(table, sep="\t")
    observed = rows[rows["variant"] == "observed"]
    scores = {}
    for metric, level in [("perturbation_map", "batch"), ("target_map", "consensus")]:
        values = observed[(observed["metric"] == metric) & (observed["level"] == level)]["value"]
        scores[metric] = round(float(values.mean()), 4)
    return scores


def throughput(workdir: Path, model: str, config: dict) -> float:
    """Training sites sampled per CPU second of the ``pretrain`` job.

    MAE's ``train.batch_size`` counts crops (``method_params.crops`` per site, default 4).
    """
    records = (workdir / f"results/pretrain/{model}/metrics.jsonl").read_text().splitlines()
    steps = json.loads(records[-1])["step"]
    entry = config["models"][model]
    crops = entry.get("method_params", {}).get("crops", 4) if entry["method"] == "mae" else 1
    batch = entry["train"]["batch_size"] / crops
    cpu = pd.read_csv(workdir / f"benchmarks/pretrain/{model}.tsv", sep="\t")["cpu_time"].iloc[-1]
    return round(steps * batch / float(cpu), 1)


def run_seed(
    workdir: Path,
    seed: int,
    methods: list[str],
    baselines: list[str],
    config: dict,
    configfiles: list[Path],
) -> Iterator[dict]:
    """Score every model of one seed; yields one result dict per method."""
    models = [f"{m}_tiny" for m in methods]
    targets = [f"results/eval/{m}.tsv" for m in [*models, *baselines]]
    snakemake(workdir, targets, configfiles, "--config", f"seed={seed}")
    scores = {m: read_scores(workdir / f"results/eval/{m}.tsv") for m in [*models, *baselines]}
    for method, model in zip(methods, models, strict=True):
        result = {"method": method, "seed": seed}
        for metric in ("perturbation_map", "target_map"):
            result[metric] = scores[model][metric]
            result.update({f"{metric}_{b}": scores[b][metric] for b in baselines})
            if "oracle" in baselines:
                ceiling = scores["oracle"][metric]
                result[f"{metric}_of_oracle"] = round(scores[model][metric] / ceiling, 3)
        result["train_images_per_cpu_s"] = throughput(workdir, model, config)
        yield result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/paintssl_learning"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES))
    parser.add_argument("--configfile", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, help="also write the table as TSV here")
    args = parser.parse_args()
    configfiles = [p.resolve() for p in args.configfile]
    config = merged_config(configfiles)
    root = args.workdir.resolve()
    data = root / "data"
    prepare_images(data, config, configfiles)
    results = []
    for seed in args.seeds:
        workdir = seed_workdir(root, data, seed)
        for result in run_seed(workdir, seed, args.methods, args.baselines, config, configfiles):
            print(json.dumps(result), flush=True)
            results.append(result)
    table = pd.DataFrame(results)
    print(table.set_index(["method", "seed"]).to_string())
    if args.out:
        table.to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
