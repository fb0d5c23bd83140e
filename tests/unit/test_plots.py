"""Figures on small planted tables: files written and readable, and the data behind them."""

import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from paintssl.evaluate.table import TABLE_COLUMNS
from paintssl.figures.plots import (
    OTHER,
    UmapConfig,
    headline,
    pca_dims,
    plot_f1_at_k,
    plot_gene_families,
    plot_map_vs_nsb,
    plot_umap,
    top_labels,
    umap_coordinates,
)
from paintssl.figures.training import plot_training_curves
from tests.planted import PlantedDesign, aggregate_level, planted_wells


def assert_figure(png: Path, pdf: Path, min_width: int = 400) -> None:
    """Both files exist; the PNG is a real, non-blank image."""
    assert pdf.stat().st_size > 1000
    assert pdf.read_bytes().startswith(b"%PDF")
    image = matplotlib.image.imread(png)
    assert image.ndim == 3
    assert image.shape[1] >= min_width
    assert image.shape[0] >= 200
    assert image[..., :3].std() > 0.05  # not a blank canvas


class FakeUMAP:
    """Stands in for umap.UMAP (whose first import compiles for ~20 s): records its
    arguments and input and returns the first two input columns."""

    calls: ClassVar[list[dict]] = []

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs

    def fit_transform(self, data: np.ndarray) -> np.ndarray:
        FakeUMAP.calls.append({**self.kwargs, "input_shape": data.shape})
        return np.asarray(data[:, :2], dtype=np.float64)


@pytest.fixture
def fake_umap(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    FakeUMAP.calls = []
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    return FakeUMAP.calls


@pytest.fixture(scope="module")
def wells() -> pd.DataFrame:
    return planted_wells(PlantedDesign(), seed=0)


def test_top_labels_keeps_the_most_frequent_and_greys_the_rest() -> None:
    # target Ti appears 30 - i times: T0..T19 are the top 20, T20..T24 become "other"
    labels = pd.Series([f"T{i}" for i in range(25) for _ in range(30 - i)] + [None])
    top = top_labels(labels, top=20)
    assert set(top) - {OTHER} == {f"T{i}" for i in range(20)}
    assert (top[labels.isin([f"T{i}" for i in range(20, 25)])] == OTHER).all()
    assert top.iloc[-1] == OTHER  # missing target


def test_top_labels_multilabel_takes_the_most_frequent_top_target() -> None:
    labels = pd.Series(["B|A", "A", "A", "B ", "C|B", "D", np.nan, "| "])
    top = top_labels(labels, top=2, multilabel=True)
    # counts: A 3, B 3 (tie broken by name), C 1, D 1; blanks are no target
    assert top.tolist() == ["A", "A", "A", "B", "B", OTHER, OTHER, OTHER]


def test_pca_dims_is_capped_by_features_and_wells() -> None:
    assert pca_dims(n_wells=10_000, n_features=384, n_pcs=200) == 200
    assert pca_dims(n_wells=10_000, n_features=32, n_pcs=200) == 32
    assert pca_dims(n_wells=12, n_features=384, n_pcs=200) == 12
    assert pca_dims(n_wells=12, n_features=384, n_pcs=5) == 5


def test_umap_caps_pcs_and_neighbours_on_small_data(fake_umap: list[dict]) -> None:
    feats = np.random.default_rng(0).standard_normal((20, 300))
    coords = umap_coordinates(feats, UmapConfig(), seed=3)
    assert coords.shape == (20, 2)
    (call,) = fake_umap
    assert call["input_shape"] == (20, 20)
    assert call["n_neighbors"] == 19
    assert call["metric"] == "correlation"
    assert call["min_dist"] == 0.7
    assert call["random_state"] == 3


def test_umap_rejects_too_few_wells() -> None:
    with pytest.raises(ValueError, match="at least 4 wells"):
        umap_coordinates(np.ones((3, 10)), UmapConfig())


def test_plot_umap_writes_four_panels_per_model(
    wells: pd.DataFrame, tmp_path: Path, fake_umap: list[dict]
) -> None:
    profiles = {"m1": tmp_path / "m1.parquet", "m2": tmp_path / "m2.parquet"}
    wells.to_parquet(profiles["m1"])
    wells.iloc[:, :-8].to_parquet(profiles["m2"])  # 8 features fewer
    png, pdf = tmp_path / "figures" / "umap.png", tmp_path / "figures" / "umap.pdf"
    plot_umap(profiles, png, pdf, UmapConfig())
    assert_figure(png, pdf, min_width=1000)
    assert [call["input_shape"] for call in fake_umap] == [(len(wells), 32), (len(wells), 24)]


def test_plot_umap_without_cell_count_still_draws(
    wells: pd.DataFrame, tmp_path: Path, fake_umap: list[dict]
) -> None:
    profiles = tmp_path / "well.parquet"
    wells.head(8).drop(columns=["Metadata_cell_count", "Metadata_target"]).to_parquet(profiles)
    plot_umap({"m": profiles}, tmp_path / "u.png", tmp_path / "u.pdf", UmapConfig())
    assert_figure(tmp_path / "u.png", tmp_path / "u.pdf")


@pytest.mark.slow
def test_real_umap_keeps_planted_replicates_together(wells: pd.DataFrame) -> None:
    feats = wells.filter(like="f_").to_numpy()
    coords = umap_coordinates(feats, UmapConfig(n_neighbors=15), seed=0)
    assert coords.shape == (len(wells), 2)
    assert np.isfinite(coords).all()
    trt = (wells["Metadata_pert_type"] == "trt").to_numpy()
    distances = np.linalg.norm(coords[trt, None] - coords[None, trt], axis=-1)
    np.fill_diagonal(distances, np.inf)
    perturbation = wells.loc[trt, "Metadata_JCP2022"].to_numpy()
    same = perturbation[distances.argmin(axis=1)] == perturbation
    assert same.mean() > 0.8


def eval_table(perturbation_map: float, nsb: float) -> pd.DataFrame:
    """A small eval TSV: observed and chance rows of the four plotted metrics, two lines."""
    rows = []
    for setting in ("U2OS", "A549"):
        for metric, observed, chance in (
            ("perturbation_map", perturbation_map, 0.05),
            ("nsb_accuracy", nsb, 0.02),
            ("target_map", perturbation_map / 2, 0.1),
            ("nsbp_target_accuracy", np.nan, np.nan),  # undefined metric: skipped
        ):
            for variant, value in (("observed", observed), ("random_features", chance)):
                rows.append(dict.fromkeys(TABLE_COLUMNS, np.nan) | {
                    "metric": metric, "level": "batch", "setting": setting,
                    "variant": variant, "value": value, "note": "",
                })  # fmt: skip
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def test_headline_names_the_best_model_and_margin() -> None:
    values = pd.Series({"random_vits": 0.10, "dino": 0.35, "mae": np.nan})
    assert headline(values) == "best dino 0.350, +0.250 over random_vits"
    assert headline(values.drop("dino")) == "best random_vits 0.100"
    assert headline(pd.Series({"a": np.nan})) == "no values"


def test_plot_map_vs_nsb(tmp_path: Path) -> None:
    tables = {}
    for model, value in (("dino", 0.4), ("random_vits", 0.1)):
        tables[model] = tmp_path / f"{model}.tsv"
        eval_table(value, value + 0.1).to_csv(tables[model], sep="\t", index=False)
    plot_map_vs_nsb(tables, tmp_path / "f.png", tmp_path / "f.pdf")
    assert_figure(tmp_path / "f.png", tmp_path / "f.pdf", min_width=1000)


def test_plot_map_vs_nsb_with_only_missing_values(tmp_path: Path) -> None:
    table = eval_table(np.nan, np.nan)
    table.to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    plot_map_vs_nsb({"m": tmp_path / "m.tsv"}, tmp_path / "f.png", tmp_path / "f.pdf")
    assert_figure(tmp_path / "f.png", tmp_path / "f.pdf")


def test_plot_f1_at_k(tmp_path: Path) -> None:
    ks = np.arange(1, 50, 2)
    tables = {}
    for model, scale in (("dino", 0.8), ("random_vits", 0.3)):
        curves = {"observed": scale / np.sqrt(ks), "random_features": 0.05 / ks}
        rows = [
            {"metric": metric, "level": "batch", "setting": "U2OS", "variant": variant,
             "k": k, "value": value, "n_queries": 40}
            for metric in ("f1_perturbation", "f1_target")
            for variant, curve in curves.items()
            for k, value in zip(ks, curve, strict=True)
        ]  # fmt: skip
        tables[model] = tmp_path / f"{model}_f1.tsv"
        pd.DataFrame(rows).to_csv(tables[model], sep="\t", index=False)
    plot_f1_at_k(tables, tmp_path / "f1.png", tmp_path / "f1.pdf")
    assert_figure(tmp_path / "f1.png", tmp_path / "f1.pdf", min_width=1000)


def test_plot_gene_families_heatmap_per_cell_line(wells: pd.DataFrame, tmp_path: Path) -> None:
    consensus = tmp_path / "consensus.parquet"
    aggregate_level(wells, "consensus").to_parquet(consensus)
    plot_gene_families(consensus, tmp_path / "g.png", tmp_path / "g.pdf", title="m")
    assert_figure(tmp_path / "g.png", tmp_path / "g.pdf", min_width=1500)


def test_plot_gene_families_without_families_says_so(wells: pd.DataFrame, tmp_path: Path) -> None:
    consensus = tmp_path / "consensus.parquet"
    table = aggregate_level(wells, "consensus").assign(Metadata_gene_family=pd.NA)
    table.to_parquet(consensus)
    plot_gene_families(consensus, tmp_path / "g.png", tmp_path / "g.pdf")
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert (tmp_path / "g.pdf").exists()


def test_plot_training_writes_png_and_pdf(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        {"step": s, "epoch": 0, "loss": 5 / (s + 1), "lr": 1e-3, "wd": 0.04} for s in range(20)
    ]
    metrics.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    plot_training_curves(metrics, tmp_path / "t.png", tmp_path / "t.pdf")
    image = matplotlib.image.imread(tmp_path / "t.png")
    assert image.shape[1] >= 600
    assert (tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")
