"""Per-plate robust z-scores (pycytominer ``mad_robustize``): on all wells, or on negcons.

The step ``mad`` centres and scales each plate on all its wells; the step ``align`` on its
negative controls only, which aligns plates on the wells that should look alike on every
plate (the JUMP recipe's plate-wise normalisation). Both use the median and the MAD: robust to
a few failed control wells, and the same statistic as ``mad``, so the two differ only in the
wells they fit on.
"""

from __future__ import annotations

import logging

import pandas as pd

from paintssl.tables import PERT_TYPE, PLATE, feature_columns, metadata_columns

log = logging.getLogger(__name__)

NEGCON_QUERY = f"{PERT_TYPE} == 'negcon'"


def zero_mad_features(df: pd.DataFrame) -> list[str]:
    """Features whose median absolute deviation is 0 on some plate (robust z-score undefined)."""
    features = feature_columns(df)
    deviation = df[features].sub(df.groupby(PLATE)[features].transform("median")).abs()
    mad = deviation.groupby(df[PLATE]).median()
    return [f for f in features if (mad[f] == 0).any()]


def robustize_per_plate(df: pd.DataFrame, samples: str) -> pd.DataFrame:
    """Per-plate robust z-score, (x - median) / (1.4826 MAD), fitted on ``samples`` (pycytominer).

    ``samples`` is ``all`` or a ``DataFrame.query`` selecting each plate's reference wells.
    Features with MAD 0 on the reference wells of some plate are dropped first, as
    jump-profiling-recipe keeps only features with a non-zero MAD on every plate: pycytominer
    divides by MAD + 1e-18, which turns discrete CellProfiler features (object counts, Euler
    numbers) into values of 1e18 that would outweigh every other feature.
    """
    from pycytominer import normalize

    reference = df if samples == "all" else df.query(samples)
    constant = zero_mad_features(reference)
    if constant:
        wells = "wells" if samples == "all" else f"wells where {samples}"
        log.warning("dropping %d features with MAD 0 among the %s of some plate, e.g. %s",
                    len(constant), wells, ", ".join(constant[:3]))  # fmt: skip
        df = df.drop(columns=constant)
    plates = [
        normalize(
            plate,
            features=feature_columns(df),
            meta_features=metadata_columns(df),
            samples=samples,
            method="mad_robustize",
            output_type=None,
        )
        for _, plate in df.groupby(PLATE, sort=True)
    ]
    return pd.concat(plates, ignore_index=True)


def mad_robustize_per_plate(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`robustize_per_plate` on all wells of each plate (the step ``mad``)."""
    return robustize_per_plate(df, "all")


def align_plates(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`robustize_per_plate` on each plate's negative controls (the step ``align``).

    Raises
    ------
    ValueError
        Naming the plates without a negative-control well.
    """
    with_negcon = set(df.loc[df[PERT_TYPE] == "negcon", PLATE])
    missing = sorted(set(df[PLATE]) - with_negcon)
    if missing:
        raise ValueError(
            f"profile step align centres each plate on its negative controls ({NEGCON_QUERY}), "
            f"but plate(s) {', '.join(map(str, missing))} have none; add their negcon wells to "
            f"the metadata, or use the step mad (all wells of the plate) instead"
        )
    return robustize_per_plate(df, NEGCON_QUERY)
