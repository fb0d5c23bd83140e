"""Figures: UMAP of well profiles, mAP vs NSB accuracy, F1 at k, gene-family heatmaps.

Every ``plot_*`` function writes one figure as PNG and PDF and copes with small data
(a few wells, one model, metrics that are NaN): panels without data say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from sklearn.decomposition import PCA

from paintssl.evaluate.family import cluster_families
from paintssl.evaluate.table import treatments
from paintssl.figures.common import no_data, save_figure
from paintssl.tables import (
    BATCH,
    CELL_COUNT,
    CELL_LINE,
    MULTILABEL_SEP,
    SOURCE,
    TARGET,
    split_features,
)

OTHER = "other"
GREY = "#c8c8c8"
OBSERVED, CHANCE = "observed", "random_features"
RETRIEVAL_PAIRS = {  # (x: nearest-neighbour accuracy on wells, y: mAP)
    "perturbation": ("nsb_accuracy", "perturbation_map"),
    "target": ("nsbp_target_accuracy", "target_map"),
}
F1_METRICS = ("f1_perturbation", "f1_cross_source", "f1_target", "f1_gene_family")
UMAP_PANELS = {  # column: (title, multilabel)
    TARGET: ("target", True),
    BATCH: ("batch", False),
    SOURCE: ("source", False),
}


@dataclass(frozen=True)
class UmapConfig:
    """The ``figures.umap`` section of the config (defaults: Kim et al. 2025's figures).

    Attributes
    ----------
    n_pcs : principal components the UMAP is computed on.
    metric : UMAP's distance between well profiles.
    n_neighbors, min_dist : UMAP's neighbourhood size and minimum distance.
    top : targets coloured in the target panel (the rest is grey).
    """

    n_pcs: int = 200
    metric: str = "correlation"
    n_neighbors: int = 50
    min_dist: float = 0.7
    top: int = 20


def top_labels(labels: pd.Series, top: int, multilabel: bool = False) -> pd.Series:
    """Each profile's label if among the ``top`` most frequent, else ``other``.

    With ``multilabel`` ('|'-separated targets) labels are counted one by one and a
    profile takes its most frequent label among the top ones. Ties in frequency are
    broken by name; missing labels are ``other``.
    """
    items = labels.map(
        lambda s: [] if pd.isna(s) else [x.strip() for x in str(s).split(MULTILABEL_SEP)
                                         if x.strip()] if multilabel else [str(s)]
    )  # fmt: skip
    counts = items.explode().dropna().value_counts()
    ranked = sorted(counts.index, key=lambda name: (-counts[name], name))[:top]
    rank = {name: i for i, name in enumerate(ranked)}
    best = items.map(lambda row: min((x for x in row if x in rank), key=rank.get, default=OTHER))
    return best.astype(str)


def pca_dims(n_wells: int, n_features: int, n_pcs: int) -> int:
    """Principal components kept before UMAP: ``n_pcs`` capped by the data's rank bound."""
    return max(1, min(n_pcs, n_features, n_wells))


def umap_coordinates(feats: np.ndarray, cfg: UmapConfig, seed: int = 0) -> np.ndarray:
    """2-D UMAP of the first ``cfg.n_pcs`` principal components of the profiles.

    Neighbours are capped at the number of wells minus one; at least 4 wells and 2
    features are needed.
    """
    n_wells, n_features = feats.shape
    if n_wells < 4 or n_features < 2:
        raise ValueError(f"UMAP needs at least 4 wells and 2 features, got {feats.shape}")
    import umap  # slow first import (numba compilation): only when a UMAP is drawn

    pcs = PCA(n_components=pca_dims(n_wells, n_features, cfg.n_pcs), random_state=seed)
    reduced = pcs.fit_transform(np.asarray(feats, dtype=np.float64))
    reducer = umap.UMAP(
        n_neighbors=min(cfg.n_neighbors, n_wells - 1),
        min_dist=cfg.min_dist,
        metric=cfg.metric,
        random_state=seed,
        n_jobs=1,
        init="spectral" if n_wells > 10 else "random",
    )
    return reducer.fit_transform(reduced)


def marker_size(n_points: int) -> float:
    """Scatter marker area that keeps a few wells visible and many wells readable."""
    return float(np.clip(4000 / max(n_points, 1), 1.0, 30.0))


def scatter_categories(ax: Axes, coords: np.ndarray, labels: pd.Series, title: str) -> None:
    """Coloured top categories over grey ``other`` points, legend outside the panel."""
    size = marker_size(len(coords))
    is_other = (labels == OTHER).to_numpy()
    if is_other.any():
        ax.scatter(*coords[is_other].T, s=size, c=GREY, label=OTHER, linewidths=0)
    names = sorted(set(labels) - {OTHER})
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    for colour, name in zip(colours, names, strict=False):
        keep = (labels == name).to_numpy()
        ax.scatter(*coords[keep].T, s=size, color=colour, label=name, linewidths=0)
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6, markerscale=8 / np.sqrt(size),
        frameon=False, title=title, title_fontsize=7,
    )  # fmt: skip
    ax.set_title(f"coloured by {title}")


def scatter_values(ax: Axes, coords: np.ndarray, values: pd.Series, title: str) -> None:
    """Points coloured by a continuous value (grey where missing), with a colour bar."""
    size = marker_size(len(coords))
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    missing = np.isnan(numbers)
    ax.scatter(*coords[missing].T, s=size, c=GREY, linewidths=0)
    points = ax.scatter(*coords[~missing].T, s=size, c=numbers[~missing], cmap="viridis")
    if (~missing).any():
        plt.colorbar(points, ax=ax, label=title)
    ax.set_title(f"coloured by {title}")


def umap_row(axes: Sequence[Axes], profiles: str | Path, cfg: UmapConfig, seed: int) -> str:
    """One model's UMAP in 4 panels (target, batch, source, cell count); returns its caption."""
    meta, feats = split_features(pd.read_parquet(profiles))
    coords = umap_coordinates(feats, cfg, seed)
    for ax, (column, (name, multilabel)) in zip(axes, UMAP_PANELS.items(), strict=False):
        if column in meta:
            scatter_categories(ax, coords, top_labels(meta[column], cfg.top, multilabel), name)
        else:
            no_data(ax, f"no {column} column")
    if CELL_COUNT in meta:
        scatter_values(axes[3], coords, meta[CELL_COUNT], "cell count")
    else:
        no_data(axes[3], f"no {CELL_COUNT} column")
    for ax in axes:
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
    return f"{len(meta)} wells, UMAP of {pca_dims(*feats.shape, cfg.n_pcs)} PCs"


def plot_umap(
    profiles: Mapping[str, str | Path],
    out_png: str | Path,
    out_pdf: str | Path,
    cfg: UmapConfig,
    seed: int = 0,
) -> None:
    """Draw the UMAP of each model's well profiles, one row of 4 panels per model.

    Panels: target, batch, source and cell count. The target panel colours the ``cfg.top``
    most frequent targets (rest grey). All wells (controls included) of all cell lines share
    one embedding per model. One figure for all models: UMAP's numba compilation (~15 s)
    is paid once, and the models can be compared row by row.
    """
    fig, axes = plt.subplots(len(profiles), 4, figsize=(26, 5.5 * len(profiles)), squeeze=False)
    for row, (model, path) in zip(axes, profiles.items(), strict=True):
        caption = umap_row(row, path, cfg, seed)
        row[0].annotate(f"{model}: {caption}", (0, 1.12), xycoords="axes fraction",
                        fontsize=12, fontweight="bold")  # fmt: skip
    fig.tight_layout()
    save_figure(fig, out_png, out_pdf)


def read_tables(tables: Mapping[str, str | Path]) -> pd.DataFrame:
    """Concatenate per-model TSVs with a ``model`` column."""
    parts = [pd.read_csv(path, sep="\t").assign(model=model) for model, path in tables.items()]
    return pd.concat(parts, ignore_index=True)


def headline(values: pd.Series) -> str:
    """Which model is best (``values`` indexed by model) and by how much over the next."""
    ranked = values.dropna().sort_values(ascending=False)
    if ranked.empty:
        return "no values"
    best = f"best {ranked.index[0]} {ranked.iloc[0]:.3f}"
    if len(ranked) == 1:
        return best
    return f"{best}, +{ranked.iloc[0] - ranked.iloc[1]:.3f} over {ranked.index[1]}"


def model_colours(models: pd.Series | pd.Index) -> dict[str, tuple]:
    """Return a tab10 colour per model name (sorted), cycling past ten models."""
    palette = plt.get_cmap("tab10").colors
    return {m: palette[i % len(palette)] for i, m in enumerate(sorted(set(models)))}


def metric_values(table: pd.DataFrame, metric: str, variant: str) -> pd.DataFrame:
    """``value`` per model x setting for one metric and variant."""
    rows = table[(table["metric"] == metric) & (table["variant"] == variant)]
    return rows.pivot_table(index="model", columns="setting", values="value", aggfunc="mean")


def retrieval_panel(ax: Axes, table: pd.DataFrame, x_metric: str, y_metric: str) -> None:
    """Observed (x, y) per model and cell line, with random-feature chance levels."""
    x, y = metric_values(table, x_metric, OBSERVED), metric_values(table, y_metric, OBSERVED)
    points = pd.concat({"x": x.stack(), "y": y.stack()}, axis=1).dropna()
    ax.set_xlabel(f"{x_metric} (well profiles)")
    ax.set_ylabel(y_metric)
    if points.empty:
        no_data(ax, f"no observed {x_metric} and {y_metric} values")
        return
    markers = dict(zip(sorted(points.index.unique("setting")), "osD^vP*X", strict=False))
    colours = model_colours(points.index.get_level_values("model"))
    for (model, setting), (px, py) in points.iterrows():
        ax.scatter(px, py, marker=markers.get(setting, "o"), s=40, color=colours.get(model, "k"))
        ax.annotate(model, (px, py), fontsize=7, xytext=(4, 4), textcoords="offset points")
    for setting, marker in markers.items():
        ax.scatter([], [], marker=marker, color="k", label=setting)
    label = "chance (random features)"
    for metric, line in ((y_metric, ax.axhline), (x_metric, ax.axvline)):
        chance = metric_values(table, metric, CHANCE).stack().mean()
        if np.isfinite(chance):
            line(chance, color="grey", ls="--", lw=1, label=label)
            label = None
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"{y_metric}: {headline(y.mean(axis=1))}", fontsize=9)


def plot_map_vs_nsb(
    tables: Mapping[str, str | Path], out_png: str | Path, out_pdf: str | Path
) -> None:
    """Plot observed mAP against nearest-neighbour accuracy for every model.

    ``tables`` is ``{model: eval TSV}``; panels: perturbation mAP vs NSB accuracy and target
    mAP vs NSBP accuracy.
    """
    table = read_tables(tables)
    fig, axes = plt.subplots(1, len(RETRIEVAL_PAIRS), figsize=(6 * len(RETRIEVAL_PAIRS), 5))
    for ax, (x_metric, y_metric) in zip(axes, RETRIEVAL_PAIRS.values(), strict=True):
        retrieval_panel(ax, table, x_metric, y_metric)
    fig.tight_layout()
    save_figure(fig, out_png, out_pdf)


def f1_panel(ax: Axes, table: pd.DataFrame, metric: str) -> None:
    """F1 against k per model (colour) and cell line (line style), chance in grey."""
    rows = table[table["metric"] == metric].dropna(subset=["value"])
    ax.set_title(metric, fontsize=9)
    ax.set_xlabel("k nearest neighbours")
    ax.set_ylabel("F1")
    observed = rows[rows["variant"] == OBSERVED]
    if observed.empty:
        no_data(ax, f"no observed {metric} values")
        return
    styles = dict(zip(sorted(observed["setting"].unique()), ["-", "--", ":", "-."], strict=False))
    colours = model_colours(observed["model"])
    for (model, setting), curve in observed.groupby(["model", "setting"]):
        ax.plot(curve["k"], curve["value"], color=colours[model], ls=styles.get(setting, "-"),
                label=f"{model} {setting}")  # fmt: skip
    chance = rows[rows["variant"] == CHANCE].groupby("k")["value"].mean()
    if not chance.empty:
        ax.plot(chance.index, chance.to_numpy(), color="grey", ls="--", lw=1, label="chance")
    ax.legend(fontsize=6, frameon=False)
    ax.set_title(f"{metric}: {headline(observed.groupby('model')['value'].mean())}", fontsize=9)


def plot_f1_at_k(
    tables: Mapping[str, str | Path], out_png: str | Path, out_pdf: str | Path
) -> None:
    """Plot F1 at k of every model, one panel per retrieval task.

    ``tables`` is ``{model: results/eval/{model}/f1.tsv}``; the headline ranks models by F1
    averaged over k and cell lines.
    """
    table = read_tables(tables)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, metric in zip(axes.flat, F1_METRICS, strict=True):
        f1_panel(ax, table, metric)
    fig.tight_layout()
    save_figure(fig, out_png, out_pdf)


def family_panel(ax: Axes, consensus: pd.DataFrame, setting: str) -> None:
    """Dendrogram-ordered gene-gene correlations of one cell line, AMI in the title."""
    meta, feats = split_features(treatments(consensus))
    result = cluster_families(meta, feats)
    if result.correlation.empty:
        no_data(ax, f"{setting}: no heatmap ({result.note})")
        return
    corr = result.correlation
    image = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="none")
    fontsize = float(np.clip(400 / len(corr), 2, 8))
    ax.set_xticks(range(len(corr)), corr.columns, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(corr)), corr.index, fontsize=fontsize)
    plt.colorbar(image, ax=ax, shrink=0.6, label="Pearson correlation")
    ax.set_title(f"{setting}: AMI {result.ami:.2f}, {result.families.nunique()} families")


def plot_gene_families(
    consensus: str | Path, out_png: str | Path, out_pdf: str | Path, title: str = ""
) -> None:
    """Gene-family clustering heatmap (``metrics_family.cluster_families``) per cell line."""
    table = pd.read_parquet(consensus)
    settings = sorted(table[CELL_LINE].dropna().unique())
    fig, axes = plt.subplots(1, max(len(settings), 1), figsize=(9 * max(len(settings), 1), 8))
    axes = np.atleast_1d(axes)
    if not settings:
        no_data(axes[0], "no cell line in the consensus profiles")
    for ax, setting in zip(axes, settings, strict=False):
        family_panel(ax, table[table[CELL_LINE] == setting], setting)
    fig.suptitle(f"{title} gene families".strip())
    fig.tight_layout()
    save_figure(fig, out_png, out_pdf)
