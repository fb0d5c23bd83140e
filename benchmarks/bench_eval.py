"""Time the evaluation on planted well profiles, per metric, and our LISI against harmonypy.

Usage: ``OMP_NUM_THREADS=2 python benchmarks/bench_eval.py --wells 100000 --features 384``
(the goal is <= 10 min on 2 cores; use fewer wells for a quick, extrapolated run).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from harmonypy import compute_lisi

from paintssl.evaluate import evaluate_model
from paintssl.metrics_batch import lisi_at_k
from paintssl.metrics_knn import knn_graph, unit_rows
from paintssl.metrics_planted import PlantedDesign, write_planted_profiles


class StepTimer(logging.Handler):
    """Seconds between consecutive log lines of paintssl.evaluate (one per metric block)."""

    def __init__(self) -> None:
        super().__init__()
        self.last, self.label, self.steps = time.perf_counter(), "read profiles", {}

    def emit(self, record: logging.LogRecord) -> None:
        now = time.perf_counter()
        self.steps[self.label] = now - self.last
        self.last, self.label = now, record.getMessage()


def design_for(n_wells: int, n_features: int) -> PlantedDesign:
    """A design of about ``n_wells`` wells: 2 cell lines x 2 sources x 4 batches x 2 wells."""
    per_batch = n_wells // (2 * 2 * 4)
    n_perts = max(8, per_batch // 2 - 8)
    return PlantedDesign(
        batches_per_source=4, n_compounds=n_perts // 2, n_genes=n_perts // 2,
        n_features=n_features, batch_effect=0.5,
    )  # fmt: skip


def lisi_ratio(n: int, n_features: int) -> tuple[float, float]:
    """Seconds for our LISI (kNN graph included) and for harmonypy.compute_lisi at k=90."""
    rng = np.random.default_rng(0)
    feats = unit_rows(rng.standard_normal((n, n_features))).astype(np.float64)
    labels = pd.Series(rng.integers(0, 4, n).astype(str))
    start = time.perf_counter()
    neighbours, distances = knn_graph(feats, 90)
    lisi_at_k(distances, neighbours, labels, 90)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    compute_lisi(feats, pd.DataFrame({"b": labels}), ["b"], perplexity=30)
    return ours, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wells", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=384)
    parser.add_argument("--null-size", type=int, default=10_000)
    args = parser.parse_args()
    timer = StepTimer()
    logging.getLogger("paintssl.evaluate").addHandler(timer)
    logging.getLogger("paintssl.evaluate").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_planted_profiles(design_for(args.wells, args.features), tmp)
        n_wells = len(pd.read_parquet(paths["well"], columns=["Metadata_Well"]))
        start = time.perf_counter()
        evaluate_model(paths, Path(tmp) / "eval.tsv", null_size=args.null_size, seed=0)
        total = time.perf_counter() - start
    timer.emit(logging.makeLogRecord({"msg": "end"}))
    print(f"{n_wells} wells x {args.features} features, null size {args.null_size}")
    for step, seconds in timer.steps.items():
        print(f"  {seconds:8.1f} s  {step}")
    print(f"  {total:8.1f} s  total")
    ours, library = lisi_ratio(min(n_wells, 5000), args.features)
    print(f"LISI k=90 on 5000 wells: ours {ours:.2f} s, harmonypy {library:.2f} s, "
          f"ratio {ours / library:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
