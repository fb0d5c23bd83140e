"""Percent replicating (replicate reproducibility) as cytominer-eval defines it.

Tested against cytominer-eval's published numbers on its LINCS example plate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def pearson_pairs(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle profile pairs (i < j) and their Pearson correlation."""
    corr = np.corrcoef(np.asarray(feats, dtype=np.float64))
    i, j = np.triu_indices(len(corr), k=1)
    return i, j, corr[i, j]


def group_codes(meta: pd.DataFrame, replicate_groups: Sequence[str]) -> np.ndarray:
    """One integer per distinct combination of the ``replicate_groups`` values."""
    group = meta[list(replicate_groups)].astype("string").fillna("<NA>").agg("\x1f".join, axis=1)
    codes = pd.factorize(group)[0]
    return codes


def replicate_reproducibility(
    meta: pd.DataFrame,
    feats: np.ndarray,
    replicate_groups: Sequence[str],
    quantile_over_null: float = 0.95,
) -> float:
    """Share of replicate pairs more correlated than the quantile of non-replicate pairs.

    Note: pairs, not per-group medians, are compared with the threshold; this is what
    reproduces cytominer-eval's published 0.4583 on its LINCS example plate.

    cytominer-eval's ``replicate_reproducibility``: Pearson correlation of every pair of
    profiles (each pair once); a pair is a replicate when it agrees on every
    ``replicate_groups`` column; the threshold is the ``quantile_over_null`` quantile of
    the non-replicate pairs (linear interpolation, as pandas).
    """
    if not 0 < quantile_over_null <= 1:
        raise ValueError(f"quantile_over_null must be in (0, 1], got {quantile_over_null}")
    codes = group_codes(meta, replicate_groups)
    i, j, sims = pearson_pairs(feats)
    is_replicate = codes[i] == codes[j]
    if not is_replicate.any():
        raise ValueError(f"no replicate pairs: no two profiles share {list(replicate_groups)}")
    threshold = np.quantile(sims[~is_replicate], quantile_over_null)
    return float((sims[is_replicate] > threshold).mean())


def median_replicate_correlation(
    meta: pd.DataFrame, feats: np.ndarray, replicate_groups: Sequence[str]
) -> pd.Series:
    """Median pairwise Pearson correlation within each replicate group of >= 2 profiles."""
    codes = group_codes(meta, replicate_groups)
    i, j, sims = pearson_pairs(feats)
    same = codes[i] == codes[j]
    return pd.Series(sims[same]).groupby(codes[i][same]).median()
