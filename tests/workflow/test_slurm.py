"""`snakemake --profile profiles/slurm` against a real one-node SLURM cluster with a fake GPU.

Uses the cluster that `sinfo` already answers for, else starts one with tests/slurm/cluster.sh
(which installs slurm-wlm and munge with apt-get when run as root) and stops it afterwards.
"""

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from .conftest import REPO, SNAKEMAKE, TINY

CLUSTER = REPO / "tests/slurm/cluster.sh"
ONE_PLATE = REPO / "tests/slurm/one_plate.yaml"
PLATE = "src01_b01_p01"  # the only plate of ONE_PLATE
TARGET = f"results/embeddings/random_vits/{PLATE}.parquet"
GPU_RULES = {"pretrain", "embed_plate"}
CPU_RULES = {"render_synthetic_plate", "preprocess_plate"}
GPU_LOGS = ("logs/pretrain/random_vits.log", f"logs/embed_plate/random_vits/{PLATE}.log")


def sinfo_answers() -> bool:
    """Whether a SLURM controller answers `sinfo` on this machine."""
    if shutil.which("sinfo") is None:
        return False
    try:
        res = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0


def cluster(action: str) -> subprocess.CompletedProcess:
    """``tests/slurm/cluster.sh start|stop`` (start may spend a minute installing SLURM)."""
    cmd = ["bash", str(CLUSTER), action]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A running SLURM cluster for the session; one started here is stopped afterwards."""
    if sinfo_answers():
        yield
        return
    try:
        start = cluster("start")
        if start.returncode != 0:
            pytest.fail(
                f"could not start a SLURM cluster with {CLUSTER} start (exit {start.returncode}):"
                f"\n{start.stderr[-3000:]}",
                pytrace=False,
            )
        yield
    finally:
        cluster("stop")


def snakemake_slurm(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` through the SLURM profile, as a user would."""
    cmd = [
        SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--profile", str(REPO / "profiles/slurm"),
        *targets,
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", "pretrain=2", "embed_plate=2",  # this one-node cluster: 2 CPUs
        "--configfile", str(REPO / "config/config.yaml"), str(TINY), str(ONE_PLATE),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)


def slurm_jobs(run_id: str) -> dict[str, dict[str, str]]:
    """Jobs of one Snakemake run as SLURM remembers them: ``{rule: {field: value}}``."""
    shown = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True
    )
    jobs = {}
    for line in shown.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobName") == run_id:
            rule = re.sub(r"^rule_|_wildcards_.*$", "", fields["Comment"])
            jobs[rule] = fields
    return jobs


@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_profile_submits_each_rule_and_gpu_rules_ask_for_a_gpu(tmp_path: Path) -> None:
    res = snakemake_slurm(tmp_path, TARGET)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-6000:]
    embeddings = pd.read_parquet(tmp_path / TARGET)
    assert len(embeddings) == 96  # one row per well of the 96-well plate

    run_id = re.search(r"SLURM run ID: (\S+)", output)
    assert run_id, output[-3000:]
    jobs = slurm_jobs(run_id[1])
    assert set(jobs) >= GPU_RULES | CPU_RULES, f"SLURM jobs of this run: {sorted(jobs)}"
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (rule, job)
        asks_gpu = re.search(r"gres[:/]gpu:1\b", job.get("TresPerJob", "")) is not None
        assert asks_gpu == (rule in GPU_RULES), (rule, job.get("TresPerJob"))

    if not torch.cuda.is_available():  # the fake GPU: both GPU rules fall back to the CPU
        for log in GPU_LOGS:
            assert "CUDA is unavailable" in (tmp_path / log).read_text(), log
