"""DAG scale: wall time and peak memory of a dry run of the real workflow on many plates.

Usage: ``python -m bench.bench_dag --plates 250 1000 2500 [--models random_vits random_tiny
dino_tiny random_features] [--snakemake-args "..."]`` (the goal: <= 60 s and <= 4 GB for 2,500
plates x 4 models; about 1.5 minutes for these three sizes on 2 cores). For every ``--plates``
size it writes, in a temporary folder (or ``--workdir``), a plates sheet (TSV: plate, batch,
source, load_data, split; 10 plates per batch, 5 batches per source, every 10th plate
``train``, the others empty = both), one load_data.csv per plate, a well-metadata table (one
DMSO well per plate) and a configfile that points ``plates`` and ``metadata`` at them and sets
``run_models`` to ``--models``. The load_data files are inputs of ``preprocess_plate``, so they
must exist for the DAG to be built (a dry run does not read them); each is a valid one-site
load_data.csv naming one shared set of 8 x 8 px TIFFs. Then it runs ``snakemake --dry-run
--quiet rules`` (``--snakefile Snakefile``, ``--directory`` a fresh folder, the workflow profile
``profiles/default`` as a plain ``snakemake`` loads it) as a subprocess and prints its wall and
CPU seconds (CPU seconds grow less when other jobs share the cores), its peak resident memory
(``ru_maxrss`` of ``os.wait4``) and the planned jobs, in all and per rule, from the dry run's
"Job stats" table. Last, the sbatch submissions that DAG makes on SLURM, without and with
``profiles/slurm``: one per job (less the job-less target ``all``), against one per job of
a rule that is neither a ``localrules`` rule of the Snakefile nor grouped, plus one per
bundle of each profile group (``group-components`` connected components; a component per job
of the group's last rules in the ``--rulegraph``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import yaml

from paintssl.synthetic.config import DMSO_ID
from paintssl.tables import CHANNELS, PERT_TYPE, PERTURBATION, PLATE, SITE, WELL

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
MODELS = ("random_vits", "random_tiny", "dino_tiny", "random_features")
PROFILE = REPO / "profiles/slurm/config.yaml"


def write_images(folder: Path) -> dict[str, str]:
    """One 8 x 8 px uint16 TIFF per channel in ``folder``; the load_data columns naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {}
    for channel in CHANNELS:
        tifffile.imwrite(folder / f"{channel}.tif", np.zeros((8, 8), dtype=np.uint16))
        columns |= {f"FileName_Orig{channel}": f"{channel}.tif",
                    f"PathName_Orig{channel}": str(folder)}  # fmt: skip
    return columns


def plate_sheet(n_plates: int, root: Path) -> pd.DataFrame:
    """``n_plates`` plates in batches of 10 and sources of 5 batches; every 10th plate trains."""
    i = np.arange(n_plates)
    plates = [f"P{k:05d}" for k in i]
    return pd.DataFrame({
        "plate": plates,
        "batch": [f"batch_{k:04d}" for k in i // 10],
        "source": [f"source_{k:03d}" for k in i // 50],
        "load_data": [str(root / p / "load_data.csv") for p in plates],
        "split": np.where(i % 10 == 0, "train", ""),
    })  # fmt: skip


def write_inputs(folder: Path, n_plates: int, models: Sequence[str]) -> Path:
    """Plates sheet, load_data files, well metadata and configfile in ``folder``; the config."""
    images = write_images(folder / "images")
    sheet = plate_sheet(n_plates, folder / "plates")
    header = ",".join([PLATE, WELL, SITE, *images])
    for plate, path in zip(sheet["plate"], sheet["load_data"], strict=True):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(f"{header}\n{','.join([plate, 'A01', '1', *images.values()])}\n")
    sheet.to_csv(folder / "plates.tsv", sep="\t", index=False)
    metadata = pd.DataFrame({PLATE: sheet["plate"], WELL: "A01", PERTURBATION: DMSO_ID,
                             PERT_TYPE: "negcon"})  # fmt: skip
    metadata.to_csv(folder / "metadata.csv", index=False)
    config = {"plates": str(folder / "plates.tsv"), "metadata": str(folder / "metadata.csv"),
              "run_models": list(models)}  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def job_counts(output: str) -> dict[str, int]:
    """Rule -> planned jobs, from the "Job stats" table of ``snakemake -n --quiet rules``."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def rule_edges(dot: str) -> set[tuple[str, str]]:
    """(upstream, downstream) rule pairs of ``snakemake --rulegraph`` (dot) output."""
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, re.MULTILINE))
    return {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.MULTILINE)}


def local_rules(snakefile: Path) -> set[str]:
    """The rules of the Snakefile's ``localrules:`` directive."""
    block = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", snakefile.read_text(), re.MULTILINE)
    return set(re.findall(r"\w+", block[1])) if block else set()


def slurm_submissions(jobs: dict[str, int], edges: set[tuple[str, str]], profile: Path) -> int:
    """sbatch calls for ``jobs`` (rule -> count) under ``profile``'s groups and local rules."""
    settings = yaml.safe_load(profile.read_text())
    group_of = dict(item.split("=") for item in settings.get("groups", []))
    size = {g: int(n) for g, n in (i.split("=") for i in settings.get("group-components", []))}
    local = local_rules(REPO / "Snakefile") | {"all"}
    total, components = 0, dict.fromkeys(size, 0)
    for rule, count in jobs.items():
        group = group_of.get(rule)
        if group is None:
            total += 0 if rule in local else count
        elif not any(a == rule and group_of.get(b) == group for a, b in edges):
            components[group] += count  # the group's last rule: one job per component
    return total + sum(math.ceil(n / size.get(g, 1)) for g, n in components.items())


def dry_run(
    config: Path, workdir: Path, log: Path, extra: Sequence[str] = ()
) -> tuple[dict[str, float], str]:
    """Wall and CPU seconds, peak RSS (MB) and output of a dry run of the workflow in ``workdir``.

    Parameters
    ----------
    config : the configfile layered over ``config/config.yaml``.
    workdir : Snakemake's ``--directory``, an existing folder.
    log : file that receives Snakemake's stdout and stderr.
    extra : further Snakemake arguments.
    """
    cmd = [
        SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--dry-run", "--quiet", "rules", *extra,
        "--configfile", str(REPO / "config/config.yaml"), str(config),
    ]  # fmt: skip
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    text = log.read_text()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"snakemake failed ({log}):\n{text[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": usage.ru_maxrss / 1024}, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plates", type=int, nargs="+", default=[2500], help="sheet sizes")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="run_models")
    parser.add_argument("--workdir", type=Path, default=None, help="default: temporary")
    parser.add_argument("--snakemake-args", default="", help="extra arguments, one string")
    args = parser.parse_args()
    extra, rows = shlex.split(args.snakemake_args), []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        for n in args.plates:
            folder = root / f"plates{n}"
            config = write_inputs(folder, n, args.models)
            run = Path(tempfile.mkdtemp(prefix="run", dir=folder))
            usage, text = dry_run(config, run, folder / "dry_run.log", extra)
            jobs = job_counts(text)
            _, dot = dry_run(config, run, folder / "rulegraph.dot", [*extra, "--rulegraph"])
            slurm = {"sbatch_per_job": sum(jobs.values()) - jobs.get("all", 0)}
            slurm["sbatch_profile"] = slurm_submissions(jobs, rule_edges(dot), PROFILE)
            rows.append({"plates": n, **usage, "jobs": sum(jobs.values()), **slurm, **jobs})
    table = pd.DataFrame(rows).set_index("plates").fillna(0)
    print(f"snakemake --dry-run {args.snakemake_args}".strip() + f"; {len(args.models)} "
          f"models: {', '.join(args.models)}")  # fmt: skip
    print(table.T.to_string(float_format=lambda x: f"{x:.0f}" if x == int(x) else f"{x:.1f}"))


if __name__ == "__main__":
    main()
