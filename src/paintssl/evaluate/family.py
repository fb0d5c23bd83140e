"""Gene-family clustering: top families by within-family correlation, linkage and AMI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from sklearn.metrics import adjusted_mutual_info_score

from paintssl.tables import (
    GENE,
    GENE_FAMILY,
    MAX_FAMILY,
    MIN_FAMILY,
)

TOP_FAMILIES = 20


@dataclass(frozen=True)
class FamilyClustering:
    """Gene-gene correlations of the selected genes, in dendrogram order, and the AMI."""

    correlation: pd.DataFrame
    families: pd.Series
    ami: float
    note: str = ""


def select_families(
    meta: pd.DataFrame,
    feats: np.ndarray,
    min_size: int = MIN_FAMILY,
    max_size: int = MAX_FAMILY,
    top: int = TOP_FAMILIES,
) -> np.ndarray:
    """Return the rows of the genes in the ``top`` most coherent families.

    Families of ``min_size``-``max_size`` profiles are ranked by their mean within-family
    Pearson correlation.
    """
    families = meta[GENE_FAMILY].astype("string")
    sizes = families.map(families.value_counts())
    eligible = families.notna() & sizes.between(min_size, max_size)
    corr = np.corrcoef(feats[eligible.to_numpy()])
    names = families[eligible].to_numpy()
    scores = {}
    for family in np.unique(names):
        members = np.flatnonzero(names == family)
        block = corr[np.ix_(members, members)]
        scores[family] = block[~np.eye(len(members), dtype=bool)].mean()
    chosen = sorted(scores, key=scores.get, reverse=True)[:top]
    return np.flatnonzero(eligible.to_numpy() & families.isin(chosen).to_numpy())


def cluster_families(
    meta: pd.DataFrame,
    feats: np.ndarray,
    min_size: int = MIN_FAMILY,
    max_size: int = MAX_FAMILY,
    top: int = TOP_FAMILIES,
) -> FamilyClustering:
    """Complete-linkage (Euclidean) clustering of the gene-gene correlation matrix.

    The tree is cut into as many clusters as there are families, and the clusters are
    scored with the adjusted mutual information against the family labels. Fewer than
    two eligible families give NaN and a note.
    """
    if GENE_FAMILY not in meta:
        return FamilyClustering(pd.DataFrame(), pd.Series(dtype=str), np.nan, f"no {GENE_FAMILY}")
    rows = select_families(meta, np.asarray(feats, dtype=np.float64), min_size, max_size, top)
    families = meta[GENE_FAMILY].astype("string").iloc[rows].reset_index(drop=True)
    if families.nunique() < 2:
        note = f"{families.nunique()} gene families with {min_size}-{max_size} members"
        return FamilyClustering(pd.DataFrame(), families, np.nan, note)
    corr = np.corrcoef(np.asarray(feats, dtype=np.float64)[rows])
    tree = linkage(corr, method="complete", metric="euclidean")
    clusters = fcluster(tree, t=families.nunique(), criterion="maxclust")
    order = leaves_list(tree)
    names = meta[GENE].astype("string").iloc[rows].fillna("").to_numpy()
    labels = [f"{g} ({f})" for g, f in zip(names[order], families.iloc[order], strict=True)]
    ordered = pd.DataFrame(corr[np.ix_(order, order)], index=labels, columns=labels)
    ami = float(adjusted_mutual_info_score(families, clusters))
    return FamilyClustering(ordered, families.iloc[order].reset_index(drop=True), ami)
