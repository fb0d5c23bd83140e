"""Embedding under load: a full plate in bounded memory, and killed runs that resume.

Usage: ``python -m bench.bench_load [--sizes 432 1728 3456] [--shards 8] [--kills 3]
[--seed 0] [--workers 1] [--threads 1] [--workdir DIR]`` (11 to 18 minutes on 2 shared CPU cores).

Sites: one synthetic plate of 384 wells x 9 sites of 1080 px with 5 channels (a JUMP plate,
3,456 sites). Distinct merged uint16 sites would take ~40 GB, so only ``--distinct`` sites
are rendered and preprocessed (``bench.bench_embed.prepare_sites``: ``paintssl.synthetic``,
then ``preprocess_plate``) and hard-linked under every site name of a manifest in
``preprocess_plate``'s format: site ``i`` of the plate is distinct site ``i mod --distinct``.
Decoder, model and Parquet writer do the same work per site as on distinct files; only reads
are cheaper, from the page cache instead of a cold file system.

Model: ``vit_tiny_patch16_224`` with random weights (method ``random``), 360 px tiles (9 per
site) of 60 px patches, 2 blocks of width 64, small enough that the DataLoader (decode, tiles,
normalisation) and not the network sets the pace on 2 CPU cores; the memory the embed path
holds per site (decoded site, tiles, prefetched items) does not depend on the backbone.
``--threads`` torch threads, ``--workers`` DataLoader workers.

1. Memory: the first ``--sizes`` sites of the plate are embedded as one shard by
   ``paintssl.embed.embed_shard`` (the ``embed_shard`` rule's function), each size in a
   fresh process (multiprocessing spawn; its workers start as in a Snakemake job), then
   gathered to wells (``gather_embeddings``).
   Peak RSS, two ways: psutil polls the process tree (embedding process and its DataLoader
   workers) every 0.1 s and keeps the largest sum of RSS (pages shared between processes
   count once per process, so this overstates the tree; spikes shorter than a poll are
   missed); and the kernel's high-water mark ``VmHWM`` of the embedding process alone
   (exact; Linux). Printed per size with the ratio to the smallest size.
2. Kills: the largest plate in ``--shards`` shards. A driver embeds, in order, every shard
   whose Parquet is missing (as Snakemake reruns the jobs whose outputs are missing), then
   gathers the well table. The driver gets SIGKILL at a seeded random time, the outputs are
   checked, and it is rerun; ``--kills`` times in a row, then a last rerun to the end. After
   each kill: every shard file present equals its rows of the reference, the shard being
   embedded has no file (writes are temp + rename, ``paintssl.tables.atomic_path``), the
   well table is absent, and the workers have exited. A rerun redoes the missing shards
   only, the interrupted one from its start. The final site and well tables are compared,
   bitwise (``DataFrame.equals``), with the uninterrupted one-shard run of part 1: with
   ``--batch-size`` 1 every forward pass holds one site's tiles, so a site's embedding does
   not depend on the shard that holds it (larger batches mix sites of a shard's boundary and
   differ by rounding; the maximal difference is printed).

The work folder is removed at the end unless ``--workdir`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

from bench.bench_embed import PLATE_NAME, prepare_sites
from paintssl.embed.shard import embed_shard
from paintssl.embed.tiles import EmbedConfig, shard_rows
from paintssl.embed.wells import gather_embeddings
from paintssl.pretrain.config import ModelConfig
from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.layout import plate_layout
from paintssl.tables import SITE, WELL, write_parquet

TINY = ModelConfig(
    method="random",
    backbone="vit_tiny_patch16_224",
    img_size=360,
    backbone_kwargs={"patch_size": 60, "depth": 2, "embed_dim": 64, "num_heads": 2},
)
SITE_SIZE = 1080
SITES_PER_WELL = 9
POLL_S = 0.1
MIB = 2**20


@dataclass(frozen=True)
class Job:
    """One driver run: embed the missing shards of ``manifest`` into ``out``, then gather."""

    manifest: Path
    weights: Path
    out: Path
    cfg: EmbedConfig
    workers: int
    threads: int

    def shard_path(self, shard: int) -> Path:
        """The shard's Parquet, named as ``results/embeddings/{model}/{plate}/shard-{shard}``."""
        return self.out / f"shard-{shard:03d}.parquet"

    @property
    def plate_path(self) -> Path:
        """The gathered well table."""
        return self.out.with_suffix(".parquet")

    def missing(self) -> list[int]:
        """Shards without a Parquet file."""
        return [s for s in range(self.cfg.n_shards) if not self.shard_path(s).exists()]


@dataclass(frozen=True)
class Run:
    """What one watched driver process did."""

    seconds: float
    tree_rss: int
    main_hwm: int
    killed: bool
    workers_left: int


def drive(job: Job) -> None:
    """Embed every missing shard of ``job`` in order, then gather them unless gathered.

    Runs in a spawned process, which inherits the start method ``spawn``: the platform's
    default is restored, so DataLoader workers start as in a Snakemake job (fork on Linux).
    """
    mp.set_start_method(None, force=True)
    torch.set_num_threads(job.threads)
    for shard in job.missing():
        embed_shard(
            job.manifest, job.weights, job.shard_path(shard), shard, job.cfg, job.workers, "cpu"
        )
    if not job.plate_path.exists():
        shards = [job.shard_path(s) for s in range(job.cfg.n_shards)]
        gather_embeddings(shards, job.plate_path, job.cfg.well_aggregation)


def plate_manifest(distinct: Path, n_sites: int, folder: Path) -> Path:
    """Write a manifest of ``n_sites`` plate sites hard-linked to the ``distinct`` ones.

    Site ``i`` (384 wells x 9 sites, well-major) is a link to distinct site ``i mod D``, in
    ``folder/sites/<well>_<site>.tiff``; its manifest row is the distinct site's row under
    the new well and site names. Links are made once.
    """
    wells = plate_layout(SyntheticConfig(plate_format=384), PLATE_NAME)["well"]
    names = [(w, str(s)) for w in wells for s in range(1, SITES_PER_WELL + 1)][:n_sites]
    source = pd.read_parquet(distinct)
    rows = source.iloc[np.arange(n_sites) % len(source)].reset_index(drop=True)
    rows[WELL], rows[SITE] = [w for w, _ in names], [s for _, s in names]
    paths = [f"sites/{w}_{s}.tiff" for w, s in names]
    (folder / "sites").mkdir(parents=True, exist_ok=True)
    for origin, path in zip(rows["path"], paths, strict=True):
        if not (folder / path).exists():
            os.link(distinct.parent / origin, folder / path)
    manifest = folder / f"manifest-{n_sites}.parquet"
    write_parquet(rows.assign(path=paths), manifest)
    return manifest


def vm_hwm(pid: int) -> int:
    """The kernel's peak RSS (``VmHWM``) of process ``pid`` in bytes; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    kib = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(kib[0]) * 1024 if kib else 0


def tree_rss(proc: psutil.Process) -> int:
    """Sum of the RSS of ``proc`` and its descendants (processes that exit meanwhile: 0)."""
    total = 0
    with contextlib.suppress(psutil.Error):
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    return total


def watch(job: Job, kill_after: float | None) -> Run:
    """Run :func:`drive` in a fresh process, polling memory; SIGKILL it after ``kill_after`` s.

    After a kill, waits up to 15 s for its DataLoader workers to exit by themselves (they
    poll their parent) and ends those left, counted in ``workers_left``.
    """
    proc = mp.get_context("spawn").Process(target=drive, args=(job,))
    start = time.perf_counter()
    proc.start()
    tree = psutil.Process(proc.pid)
    peak_tree = peak_main = 0
    while proc.is_alive():
        if kill_after is not None and time.perf_counter() - start >= kill_after:
            workers = tree.children(recursive=True)
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            _, alive = psutil.wait_procs(workers, timeout=15)
            for p in alive:
                p.kill()
            return Run(time.perf_counter() - start, peak_tree, peak_main, True, len(alive))
        peak_tree = max(peak_tree, tree_rss(tree))
        peak_main = max(peak_main, vm_hwm(proc.pid))
        time.sleep(POLL_S)
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"driver of {job.out} exited with {proc.exitcode}")
    return Run(time.perf_counter() - start, peak_tree, peak_main, False, 0)


def max_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest absolute difference of the float columns of two tables of the same shape."""
    floats = a.select_dtypes("float").columns
    return float(np.abs(a[floats].to_numpy() - b[floats].to_numpy()).max())


def memory_runs(distinct: Path, folder: Path, args: argparse.Namespace) -> tuple[Job, float]:
    """Part 1: each size as one shard in a fresh process; print the peaks.

    Returns the job of the largest size and its wall seconds.
    """
    print(
        f"{'sites':>6} {'wall s':>8} {'sites/s':>8} {'tree RSS MiB':>13} {'VmHWM MiB':>10} "
        f"{'tree ratio':>10} {'HWM ratio':>10}"
    )
    cfg = EmbedConfig(n_shards=1, batch_size=args.batch_size)
    shutil.rmtree(folder / "embeddings", ignore_errors=True)  # a kept --workdir: embed anew
    weights = distinct.parent.parent / "weights.pt"
    first = None
    for n in sorted(args.sizes):
        manifest = plate_manifest(distinct, n, folder / "plate")
        out = folder / "embeddings" / f"one_shard_{n}"
        job = Job(manifest, weights, out, cfg, args.workers, args.threads)
        run = watch(job, None)
        first = first or run
        print(
            f"{n:6d} {run.seconds:8.1f} {n / run.seconds:8.2f} {run.tree_rss / MIB:13.0f} "
            f"{run.main_hwm / MIB:10.0f} {run.tree_rss / first.tree_rss:10.3f} "
            f"{run.main_hwm / first.main_hwm:10.3f}"
        )
    return job, run.seconds


def check_outputs(job: Job, reference: pd.DataFrame) -> str:
    """Describe the outputs after a kill; raise if one would pass for finished but is wrong."""
    n = job.cfg.n_shards
    done = [s for s in range(n) if job.shard_path(s).exists()]
    for s in done:
        expected = shard_rows(reference, s, n).reset_index(drop=True)
        if not pd.read_parquet(job.shard_path(s)).equals(expected):
            raise AssertionError(f"{job.shard_path(s)} differs from the reference")
    if job.plate_path.exists() and len(done) < n:
        raise AssertionError(f"{job.plate_path} exists with shards missing")
    temps = [*job.out.glob("*.tmp"), *job.out.parent.glob(f"{job.plate_path.name}.tmp")]
    todo = job.missing()
    return (
        f"{len(done)}/{n} shard files, each equal to the reference"
        + (f", shard {todo[0]:03d} (in progress) has none" if todo else "")
        + f"; well table {'present' if job.plate_path.exists() else 'absent'}"
        + f"; temp files {sorted(p.name for p in temps) or 'none'}"
    )


def kill_runs(reference: Job, args: argparse.Namespace, seconds: float) -> bool:
    """Part 2: kill the sharded driver ``--kills`` times, rerun; True if it ends equal."""
    cfg = EmbedConfig(n_shards=args.shards, batch_size=args.batch_size)
    job = Job(
        reference.manifest,
        reference.weights,
        reference.out.parent / f"sharded_{args.shards}",
        cfg,
        args.workers,
        args.threads,
    )
    sites = pd.read_parquet(reference.shard_path(0))
    rng = np.random.default_rng(args.seed)
    for k in range(args.kills + 1):
        missing = job.missing()
        last = k == args.kills
        kill_after = (
            None if last else rng.uniform(0.05, 0.95) * seconds * len(missing) / cfg.n_shards
        )
        run = watch(job, kill_after)
        finished = len(missing) - len(job.missing())
        what = "first run" if k == 0 else f"rerun {k}"
        outcome = (
            f"; SIGKILL at {kill_after:.1f} s, workers left {run.workers_left}; "
            + check_outputs(job, sites)
            if run.killed
            else ("" if last else f" (before its SIGKILL time {kill_after:.1f} s)")
        )
        print(
            f"{what}: {len(missing)} shards to (re)do, finished {finished} in "
            f"{run.seconds:.1f} s{outcome}"
        )
    shards = pd.concat(
        [pd.read_parquet(job.shard_path(s)) for s in range(cfg.n_shards)], ignore_index=True
    )
    wells, wells_ref = pd.read_parquet(job.plate_path), pd.read_parquet(reference.plate_path)
    equal = shards.equals(sites) and wells.equals(wells_ref)
    print(
        f"final vs uninterrupted one-shard run: sites and wells bitwise equal: {equal} "
        f"(max |diff| sites {max_diff(shards, sites):.3g}, wells "
        f"{max_diff(wells, wells_ref):.3g})"
    )
    return equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[432, 1728, 3456],
        help="plate sites embedded as one shard (at most 3456)",
    )
    parser.add_argument("--distinct", type=int, default=24, help="sites rendered")
    parser.add_argument("--shards", type=int, default=8, help="shards of the killed runs")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="of the kill times")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch-size", type=int, default=1, help="tiles (1: one site a pass)")
    parser.add_argument("--workdir", type=Path, default=None, help="kept (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        start = time.perf_counter()
        distinct = prepare_sites(folder / "distinct", args.distinct, SITE_SIZE, TINY)
        print(
            f"{args.distinct} distinct sites of {SITE_SIZE} px rendered and preprocessed in "
            f"{time.perf_counter() - start:.1f} s; {TINY.backbone} {dict(TINY.backbone_kwargs)}"
            f", {TINY.img_size} px tiles, batch {args.batch_size} tiles, {args.workers} "
            f"workers, {args.threads} torch threads"
        )
        reference, seconds = memory_runs(distinct, folder, args)
        equal = kill_runs(reference, args, seconds)
        print(f"total wall time {time.perf_counter() - start:.1f} s")
    raise SystemExit(0 if equal else 1)


if __name__ == "__main__":
    main()
