"""Time the whole evaluation on planted well profiles, step by step, and compare with libraries.

Usage: ``python -m bench.bench_eval --wells 100000 --features 384 --threads 2``
(the goal is <= 10 min on 2 cores). Prints the seconds of every step of ``evaluate_model``
(summed over cell lines), the total, and, measured in the same run on subsets, our AP against
copairs' ``average_precision`` and our LISI against ``harmonypy.compute_lisi`` (time ratio and
largest difference).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from copairs import map as copairs_map
from harmonypy import compute_lisi
from threadpoolctl import threadpool_limits

from paintssl.evaluate.batch import lisi_at_k
from paintssl.evaluate.knn import neighbour_search, unit_rows
from paintssl.evaluate.map import average_precision
from paintssl.evaluate.model import EvalConfig, evaluate_model
from paintssl.evaluate.table import treatments
from paintssl.tables import split_features
from tests.planted import PlantedDesign, write_planted_profiles


class StepTimer(logging.Handler):
    """Wall and CPU seconds between consecutive log lines of paintssl.evaluate, per message.

    CPU seconds (all threads of this process) do not grow when other jobs share the cores.
    """

    def __init__(self) -> None:
        super().__init__()
        self.label = "read profiles"
        self.steps: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(2))
        self.restart()

    def restart(self) -> None:
        self.last = np.array([time.perf_counter(), time.process_time()])

    def emit(self, record: logging.LogRecord) -> None:
        now = np.array([time.perf_counter(), time.process_time()])
        self.steps[self.label] += now - self.last
        self.last, self.label = now, record.getMessage()


def design_for(n_wells: int, n_features: int) -> PlantedDesign:
    """A design of about ``n_wells`` wells: 2 cell lines x 2 sources x 4 batches x 2 wells."""
    per_batch = n_wells // (2 * 2 * 4)
    n_perts = max(8, per_batch // 2 - 8)
    return PlantedDesign(
        batches_per_source=4, n_compounds=n_perts // 2, n_genes=n_perts // 2,
        n_features=n_features, batch_effect=0.5,
    )  # fmt: skip


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def ap_against_copairs(batch_profiles: Path, n: int) -> str:
    """Perturbation AP (batch level, one cell line, ``n`` profiles): ours vs copairs."""
    table = treatments(pd.read_parquet(batch_profiles))
    table = table[table["Metadata_cell_line"] == table["Metadata_cell_line"].iloc[0]]
    table = table.sample(n=min(n, len(table)), random_state=0).reset_index(drop=True)
    meta, feats = split_features(table)
    task = {"pos_sameby": ["Metadata_JCP2022"], "pos_diffby": ["Metadata_Batch"]}
    ours, ours_s = timed(average_precision, meta, feats, ["Metadata_JCP2022"], ["Metadata_Batch"])
    ref, ref_s = timed(
        copairs_map.average_precision, meta, feats, **task, neg_sameby=[],
        neg_diffby=["Metadata_JCP2022"], progress_bar=False,
    )  # fmt: skip
    ref = ref[ref["n_pos_pairs"] > 0]
    diff = np.abs(ours["average_precision"].to_numpy() - ref["average_precision"].to_numpy())
    return (
        f"AP on {len(meta)} batch profiles: ours {ours_s:.2f} s, copairs {ref_s:.2f} s, "
        f"ratio {ours_s / ref_s:.3f}; {len(ours)} queries, max |AP difference| {diff.max():.1e}"
    )


def lisi_against_harmonypy(n: int, n_features: int) -> str:
    """LISI at k=90 (kNN search included): ours vs harmonypy.compute_lisi (perplexity 30)."""
    rng = np.random.default_rng(0)
    feats = unit_rows(rng.standard_normal((n, n_features))).astype(np.float64)
    labels = pd.Series(rng.integers(0, 4, n).astype(str))

    def ours() -> np.ndarray:
        neighbours = neighbour_search(feats, 90)
        return lisi_at_k(neighbours.distances(), neighbours.index, labels, 90)

    mine, ours_s = timed(ours)
    ref, ref_s = timed(compute_lisi, feats, pd.DataFrame({"b": labels}), ["b"], perplexity=30)
    diff = np.nanmax(np.abs(mine - ref[:, 0]))
    return (
        f"LISI k=90 on {n} wells: ours {ours_s:.2f} s, harmonypy {ref_s:.2f} s, "
        f"ratio {ours_s / ref_s:.3f}; max |LISI difference| {diff:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wells", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=384)
    parser.add_argument("--null-size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (cores)")
    parser.add_argument("--ap-profiles", type=int, default=4000, help="copairs comparison size")
    parser.add_argument("--lisi-wells", type=int, default=5000, help="harmonypy comparison size")
    args = parser.parse_args()
    timer = StepTimer()
    logging.getLogger("paintssl.evaluate").addHandler(timer)
    logging.getLogger("paintssl.evaluate").setLevel(logging.INFO)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        paths = write_planted_profiles(design_for(args.wells, args.features), tmp)
        sizes = {
            lvl: len(pd.read_parquet(p, columns=["Metadata_JCP2022"])) for lvl, p in paths.items()
        }
        timer.restart()
        evaluate_model(paths, Path(tmp) / "eval.tsv", EvalConfig(null_size=args.null_size))
        timer.emit(logging.makeLogRecord({"msg": "end"}))
        print(f"load average after evaluation: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{args.features} features, null size {args.null_size}, {args.threads} BLAS threads")
        print("profiles: " + ", ".join(f"{lvl} {n}" for lvl, n in sizes.items()))
        print("      wall s     CPU s  step")
        for step, (wall, cpu) in timer.steps.items():
            print(f"  {wall:10.1f} {cpu:9.1f}  {step}")
        wall, cpu = sum(timer.steps.values())
        print(f"  {wall:10.1f} {cpu:9.1f}  total")
        print(ap_against_copairs(paths["batch"], args.ap_profiles))
    print(lisi_against_harmonypy(min(args.wells, args.lisi_wells), args.features))


if __name__ == "__main__":
    main()
