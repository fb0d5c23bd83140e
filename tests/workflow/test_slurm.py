"""`snakemake --profile profiles/slurm` against a real one-node SLURM cluster with a fake GPU.

Uses the cluster that `sinfo` already answers for, else starts one with tests/slurm/cluster.sh
(which installs slurm-wlm and munge with apt-get when run as root) and stops it afterwards.
"""

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from .conftest import REPO, SNAKEMAKE, TINY

CLUSTER = REPO / "tests/slurm/cluster.sh"
TWO_PLATES = REPO / "tests/slurm/two_plates.yaml"
PLATES = ("src01_b01_p01", "src01_b01_p02")  # the plates of TWO_PLATES
TARGETS = [f"results/embeddings/{m}/{p}.parquet" for m in ("random_vits", "random_features")
           for p in PLATES]  # fmt: skip
# One sbatch per rule, or per bundle of the profile's groups (named <group>_<its rules>),
# and only the GPU ones ask for a GPU.
SUBMISSIONS = {"preflight": 1, "pretrain": 1, "render_render_synthetic_plate": 1}
SUBMISSIONS |= {"preprocess_preprocess_plate": 1, "embed_gpu_embed_plate": 1}
SUBMISSIONS |= {"features_cpu_embed_random_features": 1}
GPU_JOBS = {"pretrain", "embed_gpu_embed_plate"}
GPU_LOGS = ("logs/pretrain/random_vits.log",
            *(f"logs/embed_plate/random_vits/{plate}.log" for plate in PLATES))  # fmt: skip


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
        "--configfile", str(REPO / "config/config.yaml"), str(TINY), str(TWO_PLATES),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)


def slurm_jobs(run_id: str) -> list[tuple[str, dict[str, str]]]:
    """Jobs of one Snakemake run as SLURM remembers them: ``[(rule or group, fields)]``."""
    shown = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True
    )
    jobs = []
    for line in shown.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobName") == run_id:
            jobs.append((re.sub(r"^rule_|_wildcards_.*$", "", fields["Comment"]), fields))
    return jobs


@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_profile_bundles_plates_and_only_gpu_jobs_ask_for_a_gpu(tmp_path: Path) -> None:
    res = snakemake_slurm(tmp_path, *TARGETS)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-6000:]
    for target in TARGETS:
        assert len(pd.read_parquet(tmp_path / target)) == 96, target  # a row per well

    run_id = re.search(r"SLURM run ID: (\S+)", output)
    assert run_id, output[-3000:]
    jobs = slurm_jobs(run_id[1])
    assert Counter(name for name, _ in jobs) == SUBMISSIONS, [name for name, _ in jobs]
    for name, job in jobs:
        assert job["JobState"] == "COMPLETED", (name, job)
        asks_gpu = re.search(r"gres[:/]gpu:1\b", job.get("TresPerJob", "")) is not None
        assert asks_gpu == (name in GPU_JOBS), (name, job.get("TresPerJob"))

    if not torch.cuda.is_available():  # the fake GPU: the GPU rules fall back to the CPU
        for log in GPU_LOGS:
            assert "CUDA is unavailable" in (tmp_path / log).read_text(), log

    again = snakemake_slurm(tmp_path, *TARGETS, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr
