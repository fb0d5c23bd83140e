"""Well profiles from embeddings: annotate, filter, sphere, robustize, correct and aggregate."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pycytominer import aggregate, normalize
from sklearn.decomposition import PCA

log = logging.getLogger(__name__)

NEGCON_QUERY = "Metadata_pert_type == 'negcon'"
LEVEL_KEYS: dict[str, list[str]] = {
    "batch": ["Metadata_cell_line", "Metadata_Source", "Metadata_Batch", "Metadata_JCP2022"],
    "source": ["Metadata_cell_line", "Metadata_Source", "Metadata_JCP2022"],
    "consensus": ["Metadata_cell_line", "Metadata_JCP2022"],
}
PERTURBATION_COLUMNS = [
    "Metadata_pert_type",
    "Metadata_target",
    "Metadata_gene",
    "Metadata_gene_family",
]


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Every column that is not ``Metadata_*``."""
    return [c for c in df.columns if not c.startswith("Metadata_")]


def annotate_wells(embeddings: Sequence[str | Path], metadata: pd.DataFrame) -> pd.DataFrame:
    """Join per-plate well embeddings with the validated well metadata table.

    Wells without metadata are an error naming them (a plate map that does not match
    the images); metadata wells without images are dropped with a log line.
    """
    wells = pd.concat([pd.read_parquet(p) for p in embeddings], ignore_index=True)
    keys = ["Metadata_Plate", "Metadata_Well"]
    meta = metadata.drop(columns=["Metadata_Source", "Metadata_Batch"], errors="ignore")
    merged = wells.merge(meta, on=keys, how="left", indicator=True, validate="one_to_one")
    orphans = merged.loc[merged["_merge"] == "left_only", keys]
    if len(orphans):
        raise ValueError(
            f"{len(orphans)} imaged wells have no row in the metadata table, e.g. "
            f"{orphans.head(3).to_dict('records')}; add them to the metadata file"
        )
    log.info("annotated %d wells from %d plates", len(merged), wells["Metadata_Plate"].nunique())
    metadata_first = [c for c in merged.columns if c.startswith("Metadata_")]
    return merged[metadata_first + feature_columns(wells)]


def variance_filter(df: pd.DataFrame, threshold: float = 1e-5) -> pd.DataFrame:
    """Drop features whose variance is <= ``threshold`` in negative controls or in treatments."""
    features = feature_columns(df)
    is_negcon = df["Metadata_pert_type"] == "negcon"
    low = (df.loc[is_negcon, features].var() <= threshold) | (
        df.loc[~is_negcon, features].var() <= threshold
    )
    log.info("variance filter drops %d of %d features", int(low.sum()), len(features))
    return df.drop(columns=low.index[low])


def reduce_for_sphering(df: pd.DataFrame, max_dims: int | None, seed: int = 0) -> pd.DataFrame:
    """PCA (fit on all wells) to at most ``max_dims`` components before sphering.

    pycytominer's sphering is fitted on negative controls only; with fewer controls
    than features its whitening discards every direction the controls do not span.
    ``max_dims=None`` picks half the number of negative-control wells.
    """
    features = feature_columns(df)
    n_negcon = int((df["Metadata_pert_type"] == "negcon").sum())
    dims = max_dims if max_dims is not None else max(2, n_negcon // 2)
    if dims >= len(features):
        return df
    log.info(
        "PCA %d -> %d features before sphering (%d negcon wells)", len(features), dims, n_negcon
    )
    pcs = PCA(n_components=dims, random_state=seed).fit_transform(df[features].to_numpy())
    columns = [f"pc_{i:04d}" for i in range(dims)]
    return pd.concat(
        [df.drop(columns=features).reset_index(drop=True), pd.DataFrame(pcs, columns=columns)],
        axis=1,
    )


def spherize(df: pd.DataFrame, epsilon: float = 1e-6) -> pd.DataFrame:
    """ZCA-cor sphering fitted on all negative-control wells (pycytominer)."""
    meta = [c for c in df.columns if c.startswith("Metadata_")]
    return normalize(
        df,
        features=feature_columns(df),
        meta_features=meta,
        samples=NEGCON_QUERY,
        method="spherize",
        spherize_method="ZCA-cor",
        spherize_epsilon=epsilon,
        output_type=None,
    )


def mad_robustize_per_plate(df: pd.DataFrame) -> pd.DataFrame:
    """Per-plate robust z-score (median, MAD) over all wells of the plate (pycytominer)."""
    meta = [c for c in df.columns if c.startswith("Metadata_")]
    plates = [
        normalize(
            plate,
            features=feature_columns(df),
            meta_features=meta,
            samples="all",
            method="mad_robustize",
            output_type=None,
        )
        for _, plate in df.groupby("Metadata_Plate", sort=True)
    ]
    return pd.concat(plates, ignore_index=True)


def harmony_correct(
    df: pd.DataFrame, key: str = "Metadata_Batch", n_clusters: int = 300, max_iter: int = 20
) -> pd.DataFrame:
    """Harmony batch correction on ``key`` (harmonypy), as in jump-profiling-recipe."""
    import harmonypy

    features = feature_columns(df)
    n_clusters = min(n_clusters, max(2, len(df) // 30))
    result = harmonypy.run_harmony(
        df[features].to_numpy(dtype=np.float64),
        df[[key]],
        [key],
        nclust=n_clusters,
        max_iter_harmony=max_iter,
        random_state=0,
    )
    corrected = np.asarray(result.Z_corr)
    if corrected.shape != (len(df), len(features)):
        corrected = corrected.T
    return df.assign(**dict(zip(features, corrected.T, strict=True)))


def drop_nonfinite_features(df: pd.DataFrame) -> pd.DataFrame:
    """Drop features that normalisation made non-finite (e.g. MAD 0 on one plate)."""
    features = feature_columns(df)
    bad = ~np.isfinite(df[features].to_numpy()).all(axis=0)
    if bad.any():
        log.warning("dropping %d non-finite features after normalisation", int(bad.sum()))
    return df.drop(columns=np.asarray(features)[bad])


def normalize_profiles(
    embeddings: Sequence[str | Path],
    metadata: str | Path,
    out: str | Path,
    variance_threshold: float = 1e-5,
    sphering: bool = True,
    sphering_max_dims: int | None = None,
    sphering_epsilon: float = 1e-6,
    harmony: bool = False,
    harmony_clusters: int = 300,
    harmony_iterations: int = 20,
) -> None:
    """Annotated, normalised well profiles of one model, written to ``out``.

    Steps: join metadata, variance filter, (PCA and) ZCA-cor sphering on negative
    controls, per-plate MAD robustize, optional Harmony on batch.
    """
    df = annotate_wells(embeddings, pd.read_parquet(metadata))
    df = variance_filter(df, variance_threshold)
    if sphering:
        df = spherize(reduce_for_sphering(df, sphering_max_dims), sphering_epsilon)
    df = drop_nonfinite_features(mad_robustize_per_plate(df))
    if harmony:
        df = harmony_correct(df, n_clusters=harmony_clusters, max_iter=harmony_iterations)
    df.to_parquet(out, index=False)


def aggregate_level(wells: pd.DataFrame, level: str) -> pd.DataFrame:
    """Mean replicate profiles at ``level`` (batch, source or consensus)."""
    try:
        keys = LEVEL_KEYS[level]
    except KeyError:
        raise ValueError(f"unknown level {level!r}; expected one of {sorted(LEVEL_KEYS)}") from None
    features = feature_columns(wells)
    profiles = aggregate(wells, strata=keys, features=features, operation="mean", output_type=None)
    labels = wells.groupby(keys, dropna=False)[PERTURBATION_COLUMNS].first()
    n_wells = wells.groupby(keys, dropna=False).size().rename("Metadata_n_wells")
    annotated = profiles.merge(labels.join(n_wells).reset_index(), on=keys, how="left")
    return annotated[[*keys, *PERTURBATION_COLUMNS, "Metadata_n_wells", *features]]


def aggregate_profiles(well: str | Path, outs: dict[str, str | Path]) -> None:
    """Write each aggregated level in ``outs`` ({level: path}) from the well profiles."""
    wells = pd.read_parquet(well)
    for level, path in outs.items():
        aggregate_level(wells, level).to_parquet(path, index=False)
