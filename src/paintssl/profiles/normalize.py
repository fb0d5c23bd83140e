"""Well profiles from embeddings: annotate, then a chain of named normalisation steps.

``STEPS`` maps each step name to its function; a model's ``profile_steps`` lists the
names (as jump-profiling-recipe spells its pipelines), and without it
:func:`default_chain` builds today's chain from the ``profiles`` section. pycytominer,
scikit-learn and harmonypy are imported by the steps that use them, so the workflow can
import this module to resolve chains when it parses the config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paintssl.pretrain.config import ModelConfig
from paintssl.profiles.align import NEGCON_QUERY, align_plates, mad_robustize_per_plate
from paintssl.tables import (
    ANNOTATION_KEYS,
    BATCH,
    PERT_TYPE,
    PLATE,
    SOURCE,
    WELL,
    feature_columns,
    metadata_columns,
    write_parquet,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileConfig:
    """The ``profiles`` section of the config: which normalisation steps run, and how.

    Attributes
    ----------
    variance_threshold : drop features with variance <= this in negcon wells or in treatments.
    sphering : ZCA-cor sphering fitted on the negative controls.
    sphering_max_dims : PCA to at most this many dimensions first (None: half the negcons).
    sphering_epsilon : regularisation of the sphering transform.
    harmony : Harmony correction on ``Metadata_Batch`` after normalisation.
    harmony_clusters, harmony_iterations : Harmony's settings.
    """

    variance_threshold: float = 1e-5
    sphering: bool = True
    sphering_max_dims: int | None = None
    sphering_epsilon: float = 1e-6
    harmony: bool = False
    harmony_clusters: int = 300
    harmony_iterations: int = 20


def annotate_wells(embeddings: Sequence[str | Path], metadata: pd.DataFrame) -> pd.DataFrame:
    """Join per-plate well embeddings with the validated well metadata table.

    Wells without metadata are an error naming them (a plate map that does not match
    the images); metadata wells without images are dropped with a log line.
    """
    wells = pd.concat([pd.read_parquet(p) for p in embeddings], ignore_index=True)
    keys = list(ANNOTATION_KEYS)
    meta = metadata.drop(columns=[SOURCE, BATCH], errors="ignore")
    merged = wells.merge(meta, on=keys, how="left", indicator=True, validate="one_to_one")
    orphans = merged.loc[merged["_merge"] == "left_only", keys]
    if len(orphans):
        raise ValueError(
            f"{len(orphans)} imaged wells have no row in the metadata table, e.g. "
            f"{orphans.head(3).to_dict('records')}; add them to the metadata file"
        )
    log.info("annotated %d wells from %d plates", len(merged), wells[PLATE].nunique())
    return merged[metadata_columns(merged) + feature_columns(wells)]


def variance_filter(df: pd.DataFrame, threshold: float = 1e-5) -> pd.DataFrame:
    """Drop features whose variance is <= ``threshold`` in negative controls or in treatments."""
    features = feature_columns(df)
    is_negcon = df[PERT_TYPE] == "negcon"
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
    from sklearn.decomposition import PCA

    features = feature_columns(df)
    n_negcon = int((df[PERT_TYPE] == "negcon").sum())
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
    from pycytominer import normalize

    return normalize(
        df,
        features=feature_columns(df),
        meta_features=metadata_columns(df),
        samples=NEGCON_QUERY,
        method="spherize",
        spherize_method="ZCA-cor",
        spherize_epsilon=epsilon,
        output_type=None,
    )


def harmony_correct(
    df: pd.DataFrame, key: str = BATCH, n_clusters: int = 300, max_iter: int = 20
) -> pd.DataFrame:
    """Harmony batch correction on ``key`` (harmonypy), as in jump-profiling-recipe."""
    import harmonypy

    features = feature_columns(df)
    n_clusters = min(n_clusters, max(2, len(df) // 30))
    result = harmonypy.run_harmony(
        # features x wells: harmonypy reads a square wells x features matrix this way round
        df[features].to_numpy(dtype=np.float64).T,
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


FEATURE_SELECTION: tuple[str, ...] = (
    "frequency_threshold", "correlation_threshold", "drop_na_columns", "blocklist",
)  # fmt: skip
"""pycytominer operations of the JUMP profiling recipe, in its order. The recipe's
``variance_threshold`` (``freq_cut``/``unique_cut``: near-constant features) is named
``frequency_threshold`` in pycytominer after PR #719 (1.7.1 pinned here), whose
``variance_threshold`` is now a plain variance cut."""


def select_features(
    wells: pd.DataFrame,
    operations: Sequence[str] = FEATURE_SELECTION,
    corr_threshold: float = 0.9,
    na_cutoff: float = 0.05,
) -> pd.DataFrame:
    """Drop uninformative feature columns with :func:`pycytominer.feature_select`.

    Parameters
    ----------
    wells
        Metadata columns plus features (every non-``Metadata_*`` column).
    operations
        pycytominer operations, applied in order to the feature columns only.
    corr_threshold
        Features correlated above this with a kept feature are dropped.
    na_cutoff
        Features with a larger fraction of NaN are dropped (``drop_na_columns``).

    Returns
    -------
    pandas.DataFrame
        ``wells`` without the dropped feature columns (metadata and row order kept);
        ``blocklist`` uses pycytominer's packaged CellProfiler blocklist.
    """
    from pycytominer import feature_select

    return feature_select(
        wells,
        features=feature_columns(wells),
        operation=list(operations),
        corr_threshold=corr_threshold,
        na_cutoff=na_cutoff,
    )


Step = Callable[[pd.DataFrame, ProfileConfig], pd.DataFrame]
"""A profile step: well profiles and the ``profiles`` settings -> well profiles."""


def _variance(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """:func:`variance_filter` at ``variance_threshold``."""
    return variance_filter(df, cfg.variance_threshold)


def _sphere(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """:func:`reduce_for_sphering` to ``sphering_max_dims``, then :func:`spherize`."""
    return spherize(reduce_for_sphering(df, cfg.sphering_max_dims), cfg.sphering_epsilon)


def _mad(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """:func:`paintssl.profiles.align.mad_robustize_per_plate`."""
    return mad_robustize_per_plate(df)


def _align(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """:func:`paintssl.profiles.align.align_plates`."""
    return align_plates(df)


def _drop_nonfinite(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """:func:`drop_nonfinite_features`."""
    return drop_nonfinite_features(df)


def _featselect(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """:func:`select_features` with the JUMP recipe's operations (CellProfiler features)."""
    return select_features(df)


def _harmony(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """:func:`harmony_correct` on batch with ``harmony_clusters``, ``harmony_iterations``."""
    return harmony_correct(df, n_clusters=cfg.harmony_clusters, max_iter=cfg.harmony_iterations)


STEPS: dict[str, Step] = {
    "variance": _variance,
    "sphere": _sphere,
    "mad": _mad,
    "align": _align,
    "drop_nonfinite": _drop_nonfinite,
    "featselect": _featselect,
    "harmony": _harmony,
}
"""The profile steps by name: the only place mapping a step name to code."""


def default_chain(cfg: ProfileConfig) -> tuple[str, ...]:
    """Return the chain of a model without ``profile_steps``, from the ``profiles`` section.

    ``variance``, ``sphere`` (when ``cfg.sphering``), ``mad``, ``drop_nonfinite`` and
    ``harmony`` (when ``cfg.harmony``).
    """
    sphere = ("sphere",) if cfg.sphering else ()
    harmony = ("harmony",) if cfg.harmony else ()
    return ("variance", *sphere, "mad", "drop_nonfinite", *harmony)


def profile_chain(steps: Sequence[str] | None, cfg: ProfileConfig) -> tuple[str, ...]:
    """Return a model's chain: its ``profile_steps`` (checked), or :func:`default_chain`.

    Raises
    ------
    ValueError
        For a name that is not a key of ``STEPS``; the message lists the valid ones.
    """
    if steps is None:
        return default_chain(cfg)
    if isinstance(steps, str):
        raise ValueError(f"profile_steps must be a list of step names, not {steps!r}")
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        raise ValueError(
            f"unknown profile step(s) {', '.join(map(repr, unknown))}; "
            f"valid steps: {', '.join(STEPS)}"
        )
    return tuple(steps)


def model_chains(
    models: Mapping[str, Mapping[str, object]], cfg: ProfileConfig
) -> dict[str, list[str]]:
    """Return every model entry's chain, building its ``ModelConfig`` (checks) on the way.

    Raises
    ------
    ValueError
        For a bad entry or an unknown step, the message prefixed ``models.<name>:``.
    """
    chains = {}
    for name, entry in models.items():
        try:
            chains[name] = list(profile_chain(ModelConfig(**entry).profile_steps, cfg))
        except (TypeError, ValueError) as err:
            raise ValueError(f"models.{name}: {err}") from None
    return chains


def apply_chain(df: pd.DataFrame, steps: Sequence[str], cfg: ProfileConfig) -> pd.DataFrame:
    """Run the named steps on annotated well profiles, in order."""
    for step in profile_chain(steps, cfg):
        log.info("profile step %s", step)
        df = STEPS[step](df, cfg)
    return df


def drop_wells_without_features(df: pd.DataFrame) -> pd.DataFrame:
    """Leave out wells whose every feature is NaN (e.g. no cell segmented), with a warning."""
    empty = df[feature_columns(df)].isna().all(axis=1)
    if empty.all():
        raise ValueError(f"all {len(df)} wells have only NaN features")
    if empty.any():
        examples = df.loc[empty, [PLATE, WELL]].head(3).astype(str).agg(" ".join, axis=1)
        log.warning("leaving out %d of %d wells without features (no cells?), e.g. %s",
                    int(empty.sum()), len(df), ", ".join(examples))  # fmt: skip
    return df.loc[~empty].reset_index(drop=True)


def normalize_profiles(
    embeddings: Sequence[str | Path],
    metadata: str | Path,
    out: str | Path,
    cfg: ProfileConfig,
    steps: Sequence[str] | None = None,
) -> None:
    """Annotated, normalised well profiles of one model, written to ``out``.

    Joins the metadata (:func:`annotate_wells`), leaves out wells without any feature
    (:func:`drop_wells_without_features`), then runs the chain ``steps``
    (:func:`profile_chain`; None = :func:`default_chain`: variance filter, (PCA and) ZCA-cor
    sphering on negative controls, per-plate MAD robustize, dropping non-finite features,
    optional Harmony on batch).

    Raises
    ------
    ValueError
        When features are non-finite after the chain (add ``drop_nonfinite`` to it).
    """
    chain = profile_chain(steps, cfg)
    wells = drop_wells_without_features(annotate_wells(embeddings, pd.read_parquet(metadata)))
    df = apply_chain(wells, chain, cfg)
    features = feature_columns(df)
    if not features:
        raise ValueError(f"the profile chain {', '.join(chain)} dropped every feature; "
                         "check the model's features and its profile_steps")  # fmt: skip
    bad = ~np.isfinite(df[features].to_numpy(dtype=np.float64)).all(axis=0)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} features are non-finite after the profile chain "
            f"{', '.join(chain) or '(none)'}, e.g. {np.asarray(features)[bad][:3].tolist()}; "
            f"add the step drop_nonfinite to the model's profile_steps"
        )
    write_parquet(df, out)
