"""`snakemake --profile profiles/slurm` against a real one-node SLURM cluster with a fake GPU.

Uses the cluster that `sinfo` already answers for, else starts one with tests/slurm/cluster.sh
(which installs slurm-wlm and munge with apt-get when run as root) and stops it afterwards.
"""

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from paintssl.pretrain.run import ModelConfig, pretrain

from .conftest import REPO, SNAKEMAKE, TINY, resolved_config

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


def snakemake_slurm_command(workdir: Path, *args: str | Path) -> list[str]:
    """The command of a user's run in ``workdir`` through the SLURM profile; configfiles
    (paths) in ``args`` are layered last."""
    configfiles = [str(a) for a in args if isinstance(a, Path)]
    return [
        SNAKEMAKE,
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--profile", str(REPO / "profiles/slurm"),
        *(a for a in args if isinstance(a, str)),
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", "pretrain=2", "embed_plate=2",  # this one-node cluster: 2 CPUs
        "--configfile", str(REPO / "config/config.yaml"), str(TINY), str(TWO_PLATES),
        *configfiles,
    ]  # fmt: skip


def snakemake_slurm(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` through the SLURM profile, as a user would."""
    cmd = snakemake_slurm_command(workdir, *targets)
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)


def slurm_jobs(run_id: str | None) -> list[tuple[str, dict[str, str]]]:
    """Jobs of one Snakemake run (None: of any) as SLURM remembers them: ``[(rule, fields)]``."""
    shown = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True
    )
    jobs = []
    for line in shown.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "Comment" in fields and run_id in (None, fields.get("JobName")):
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
    signalled_training_resumes_to_the_uninterrupted_weights(tmp_path)


LONGER = "models:\n  dino_tiny:\n    train: {steps: 30, ckpt_every: 5, log_every: 1}\n"
WEIGHTS = "results/pretrain/dino_tiny/weights.pt"


def signalled_training_resumes_to_the_uninterrupted_weights(workdir: Path) -> None:
    """SLURM's USR1 reaches the trainer through the job step; the rerun resumes bitwise."""
    longer = workdir / "longer.yaml"
    longer.write_text(LONGER)
    ckpt = workdir / "results/pretrain/dino_tiny/ckpt/last.pt"
    log_file = workdir / "signalled_run.log"
    with log_file.open("w") as out:
        run = subprocess.Popen(snakemake_slurm_command(workdir, WEIGHTS, "--verbose", longer),
                               stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 600
    while not ckpt.exists() or torch.load(ckpt, weights_only=True)["step"] < 5:  # atomic
        assert run.poll() is None, log_file.read_text()[-6000:]
        assert time.monotonic() < deadline, "no checkpoint of the 30-step run in 10 min"
        time.sleep(0.1)
    job = next(fields["JobId"] for name, fields in slurm_jobs(None) if name == "pretrain"
               and fields["JobState"] == "RUNNING")  # fmt: skip
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    run.wait(timeout=600)
    output = log_file.read_text()
    assert run.returncode != 0, output[-6000:]  # the job failed visibly
    assert re.search(r"sbatch call: .*--signal=USR1@300", output), "the profile's signal"
    log = (workdir / "logs/pretrain/dino_tiny.log").read_text()
    assert "stopped by SIGUSR1 after step" in log, log[-3000:]
    assert 5 <= torch.load(ckpt, weights_only=True)["step"] < 30
    assert not (workdir / WEIGHTS).exists()

    rerun = subprocess.run(snakemake_slurm_command(workdir, WEIGHTS, longer), text=True,
                           capture_output=True, check=False, timeout=900)  # fmt: skip
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-6000:]
    config = resolved_config(TINY, TWO_PLATES, longer)
    reference = workdir / "uninterrupted/weights.pt"
    manifests = [workdir / f"results/images/{plate}/manifest.parquet" for plate in PLATES]
    pretrain(manifests, reference, ModelConfig(**config["models"]["dino_tiny"]),
             config["channels"], config["seed"])  # fmt: skip
    metrics = (workdir / "results/pretrain/dino_tiny/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == list(range(1, 31))
    resumed = torch.load(workdir / WEIGHTS, weights_only=True)["state_dict"]
    for name, value in torch.load(reference, weights_only=True)["state_dict"].items():
        assert torch.equal(value, resumed[name]), name
