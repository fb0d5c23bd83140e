"""Profile normalisation and aggregation on planted tables."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paintssl.profiles.aggregate import aggregate_level
from paintssl.profiles.normalize import (
    STEPS,
    ProfileConfig,
    annotate_wells,
    apply_chain,
    default_chain,
    drop_nonfinite_features,
    drop_wells_without_features,
    harmony_correct,
    mad_robustize_per_plate,
    model_chains,
    normalize_profiles,
    profile_chain,
    reduce_for_sphering,
    spherize,
    variance_filter,
)
from paintssl.tables import feature_columns, metadata_columns
from tests.planted import PlantedDesign
from tests.planted import planted_wells as planted_design_wells


def planted_wells(n_plates: int = 4, n_features: int = 6, seed: int = 0) -> pd.DataFrame:
    """Plates of 24 wells: 8 DMSO + 4 compounds x 4 replicates, plate offsets added."""
    rng = np.random.default_rng(seed)
    perts = ["DMSO"] * 8 + [f"cmp{i}" for i in range(4) for _ in range(4)]
    effects = {f"cmp{i}": rng.normal(0, 3, n_features) for i in range(4)} | {"DMSO": 0}
    rows, features = [], []
    for p in range(n_plates):
        offset = rng.normal(0, 5, n_features)
        for w, pert in enumerate(perts):
            rows.append(
                {
                    "Metadata_Source": f"source_{p // 2}",
                    "Metadata_Batch": f"batch_{p // 2}",
                    "Metadata_Plate": f"P{p}",
                    "Metadata_Well": f"W{w:02d}",
                    "Metadata_cell_line": "U2OS",
                    "Metadata_JCP2022": pert,
                    "Metadata_pert_type": "negcon" if pert == "DMSO" else "trt",
                    "Metadata_target": None if pert == "DMSO" else f"T{pert[-1]}",
                    "Metadata_gene": None,
                    "Metadata_gene_family": None,
                }
            )
            features.append(offset + effects[pert] + rng.normal(0, 1, n_features))
    feats = pd.DataFrame(features, columns=[f"emb_{i:04d}" for i in range(n_features)])
    return pd.concat([pd.DataFrame(rows), feats], axis=1)


def test_variance_filter_drops_constant_features_in_either_group() -> None:
    wells = planted_wells()
    wells["emb_0000"] = 1.0
    wells.loc[wells["Metadata_pert_type"] == "negcon", "emb_0001"] = 2.0
    kept = feature_columns(variance_filter(wells))
    assert "emb_0000" not in kept
    assert "emb_0001" not in kept
    assert len(kept) == 4


def test_spherize_whitens_negative_controls() -> None:
    sphered = spherize(planted_wells(n_plates=8))
    negcon = sphered.loc[sphered["Metadata_pert_type"] == "negcon", feature_columns(sphered)]
    cov = np.cov(negcon.to_numpy(), rowvar=False)
    np.testing.assert_allclose(cov, np.eye(6), atol=0.05)


def test_reduce_for_sphering_caps_dims_by_negative_controls() -> None:
    wells = planted_wells(n_plates=1, n_features=30)  # 8 negcon wells < 30 features
    reduced = reduce_for_sphering(wells, max_dims=None)
    assert len(feature_columns(reduced)) == 4
    assert len(reduced) == len(wells)
    assert reduce_for_sphering(wells, max_dims=40) is wells


def test_mad_robustize_centres_each_plate() -> None:
    robust = mad_robustize_per_plate(planted_wells())
    medians = robust.groupby("Metadata_Plate")[feature_columns(robust)].median()
    np.testing.assert_allclose(medians.to_numpy(), 0, atol=1e-9)


def test_mad_drops_features_with_zero_mad_on_some_plate() -> None:
    wells = planted_wells()
    first = wells["Metadata_Plate"] == wells["Metadata_Plate"].iloc[0]
    # a count-like feature: 1 in most wells of the first plate, so its MAD there is 0
    count = np.where(first & (np.arange(len(wells)) % 5 != 0), 1.0, np.arange(len(wells)) % 3)
    robust = mad_robustize_per_plate(wells.assign(f_count=count))
    assert "f_count" not in robust
    assert feature_columns(robust) == feature_columns(wells)
    assert np.abs(robust[feature_columns(robust)].to_numpy()).max() < 1e3


def test_aggregate_levels_group_replicates() -> None:
    wells = planted_wells()
    batch = aggregate_level(wells, "batch")
    assert len(batch) == 2 * 5  # 2 batches x (4 compounds + DMSO)
    assert set(batch["Metadata_n_wells"]) == {8, 16}
    consensus = aggregate_level(wells, "consensus")
    assert len(consensus) == 5
    cmp0 = wells[wells["Metadata_JCP2022"] == "cmp0"]
    expected = cmp0[feature_columns(wells)].mean().to_numpy()
    got = consensus.loc[consensus["Metadata_JCP2022"] == "cmp0", feature_columns(wells)]
    np.testing.assert_allclose(got.to_numpy()[0], expected)
    assert consensus.loc[consensus["Metadata_JCP2022"] == "cmp0", "Metadata_target"].item() == "T0"
    with pytest.raises(ValueError, match="unknown level"):
        aggregate_level(wells, "plate")


def test_annotate_names_wells_missing_from_metadata(tmp_path: Path) -> None:
    wells = planted_wells(n_plates=1)
    meta_cols = [c for c in wells.columns if c.startswith("Metadata_")]
    emb = wells.drop(columns=[c for c in meta_cols if c not in (
        "Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well")])  # fmt: skip
    emb.to_parquet(tmp_path / "P0.parquet")
    metadata = wells[meta_cols].drop(columns=["Metadata_Source", "Metadata_Batch"])
    assert len(annotate_wells([tmp_path / "P0.parquet"], metadata)) == len(wells)
    with pytest.raises(ValueError, match="no row in the metadata table"):
        annotate_wells([tmp_path / "P0.parquet"], metadata.iloc[1:])


def test_normalize_profiles_end_to_end(tmp_path: Path) -> None:
    wells = planted_wells(n_plates=4)
    meta_cols = metadata_columns(wells)
    for plate, df in wells.groupby("Metadata_Plate"):
        df.drop(columns=meta_cols[4:]).to_parquet(tmp_path / f"{plate}.parquet")
    wells[meta_cols].to_parquet(tmp_path / "meta.parquet")
    out = tmp_path / "well.parquet"
    normalize_profiles(
        sorted(tmp_path.glob("P*.parquet")), tmp_path / "meta.parquet", out, ProfileConfig()
    )
    profiles = pd.read_parquet(out)
    assert len(profiles) == len(wells)
    assert np.isfinite(profiles[feature_columns(profiles)].to_numpy()).all()
    # replicate profiles of a compound are closer than profiles of different compounds
    feats = profiles[profiles["Metadata_pert_type"] == "trt"]
    centroids = feats.groupby("Metadata_JCP2022")[feature_columns(profiles)].mean()
    within = feats.groupby("Metadata_JCP2022")[feature_columns(profiles)].std().mean().mean()
    assert centroids.std().mean() > within


def old_normalize(df: pd.DataFrame, cfg: ProfileConfig) -> pd.DataFrame:
    """The sequence of calls normalize_profiles made before profile chains existed."""
    df = variance_filter(df, cfg.variance_threshold)
    if cfg.sphering:
        df = spherize(reduce_for_sphering(df, cfg.sphering_max_dims), cfg.sphering_epsilon)
    df = drop_nonfinite_features(mad_robustize_per_plate(df))
    if cfg.harmony:
        df = harmony_correct(df, n_clusters=cfg.harmony_clusters, max_iter=cfg.harmony_iterations)
    return df


@pytest.mark.parametrize(
    "cfg",
    [
        ProfileConfig(),
        ProfileConfig(sphering=False),
        ProfileConfig(harmony=True, harmony_iterations=3),
        ProfileConfig(sphering_max_dims=8, variance_threshold=0.5),
    ],
)
def test_default_chain_equals_the_old_sequence_of_calls(cfg: ProfileConfig) -> None:
    wells = planted_design_wells(PlantedDesign(n_compounds=8, n_genes=8, batch_effect=1.0))
    wells["f_0000"] = 1.0  # a constant feature for the variance filter to drop
    pd.testing.assert_frame_equal(
        apply_chain(wells, default_chain(cfg), cfg), old_normalize(wells, cfg)
    )


def test_default_chain_follows_the_profiles_section() -> None:
    assert default_chain(ProfileConfig()) == ("variance", "sphere", "mad", "drop_nonfinite")
    assert profile_chain(None, ProfileConfig(sphering=False, harmony=True)) == (
        "variance",
        "mad",
        "drop_nonfinite",
        "harmony",
    )
    assert profile_chain(["mad", "variance"], ProfileConfig()) == ("mad", "variance")
    assert profile_chain([], ProfileConfig()) == ()
    assert set(STEPS) == {
        "variance", "sphere", "mad", "align", "drop_nonfinite", "featselect", "harmony"
    }  # fmt: skip


def test_unknown_step_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown profile step.*'whiten'.*valid steps: variance"):
        profile_chain(["variance", "whiten"], ProfileConfig())
    with pytest.raises(ValueError, match="list of step names"):
        profile_chain("mad", ProfileConfig())
    noise = {"method": "random_features"}
    models = {"a": noise, "b": noise | {"profile_steps": ["whiten"]}}
    with pytest.raises(ValueError, match=r"^models\.b: unknown profile step"):
        model_chains(models, ProfileConfig())
    with pytest.raises(ValueError, match=r"^models\.c: method 'external' needs"):
        model_chains({"c": {"method": "external"}}, ProfileConfig())
    assert model_chains({"a": models["a"]}, ProfileConfig()) == {
        "a": list(default_chain(ProfileConfig()))
    }


def test_normalize_profiles_runs_the_given_chain(tmp_path: Path) -> None:
    wells = planted_wells(n_plates=4)
    meta_cols = metadata_columns(wells)
    for plate, df in wells.groupby("Metadata_Plate"):
        df.drop(columns=meta_cols[4:]).to_parquet(tmp_path / f"{plate}.parquet")
    wells[meta_cols].to_parquet(tmp_path / "meta.parquet")
    embeddings = sorted(tmp_path.glob("P*.parquet"))
    out = tmp_path / "well.parquet"
    normalize_profiles(embeddings, tmp_path / "meta.parquet", out, ProfileConfig(), ["mad"])
    annotated = annotate_wells(embeddings, wells[meta_cols])
    pd.testing.assert_frame_equal(pd.read_parquet(out), mad_robustize_per_plate(annotated))
    wells.loc[0, "emb_0000"] = np.nan  # e.g. a missing value of an external profile
    wells[wells["Metadata_Plate"] == "P0"].drop(columns=meta_cols[4:]).to_parquet(
        tmp_path / "P0.parquet"
    )
    with pytest.raises(ValueError, match=r"non-finite after the profile chain mad.*drop_nonfinite"):
        normalize_profiles(embeddings, tmp_path / "meta.parquet", out, ProfileConfig(), ["mad"])
    normalize_profiles(
        embeddings, tmp_path / "meta.parquet", out, ProfileConfig(), ["mad", "drop_nonfinite"]
    )
    assert "emb_0000" not in pd.read_parquet(out).columns


# Each step against the library it wraps (and, where short, the textbook formula), called
# directly on the same table with the same settings. The library calls repeat the same
# float64 operations, so they agree to rounding (1e-9).


def design_wells(n_features: int = 32) -> pd.DataFrame:
    """448 wells on 8 plates (64 negcon wells), with batch effects."""
    return planted_design_wells(PlantedDesign(n_features=n_features, batch_effect=1.0))


def by_well(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in plate, well order with a fresh index (per-plate steps regroup the rows)."""
    return df.sort_values(["Metadata_Plate", "Metadata_Well"], ignore_index=True)


def test_sphere_step_equals_pycytominer_and_textbook_zca_cor() -> None:
    """Textbook ZCA-cor (Kessy et al. 2018): z-scores of the negcons times P^(-1/2).

    pycytominer adds ``epsilon`` (1e-6) to the singular values (>= 1.8 here) of the
    standardised negcon matrix: a relative change < 6e-7 of outputs up to ~20, so < 1.2e-5
    (hence atol 1e-4); z-scores with the population std instead are off by 0.14.
    """
    from pycytominer.operations import Spherize

    wells, cfg = design_wells(), ProfileConfig()  # 64 negcons >= 2 x 32 features: no PCA
    got = STEPS["sphere"](wells, cfg)
    meta, features = metadata_columns(wells), feature_columns(wells)
    assert feature_columns(got) == features
    pd.testing.assert_frame_equal(got[meta], wells[meta])
    negcon = wells.loc[wells["Metadata_pert_type"] == "negcon", features]
    sphere = Spherize(epsilon=cfg.sphering_epsilon, center=True, method="ZCA-cor")
    library = sphere.fit(negcon).transform(wells[features])
    np.testing.assert_allclose(got[features], library, rtol=1e-9, atol=1e-9)
    ref = negcon.to_numpy()
    z = (wells[features].to_numpy() - ref.mean(axis=0)) / ref.std(axis=0, ddof=1)
    eigenvalues, eigenvectors = np.linalg.eigh(np.corrcoef(ref, rowvar=False))
    textbook = z @ (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
    np.testing.assert_allclose(got[features], textbook, rtol=1e-5, atol=1e-4)


def test_sphere_step_first_reduces_all_wells_with_sklearn_pca() -> None:
    from pycytominer.operations import Spherize
    from sklearn.decomposition import PCA

    wells, cfg = design_wells(n_features=40), ProfileConfig()  # 40 > 64 // 2: PCA to 32
    got = STEPS["sphere"](wells, cfg)
    pcs = PCA(n_components=32, random_state=0).fit_transform(wells[feature_columns(wells)])
    pcs = pd.DataFrame(pcs, columns=[f"pc_{i:04d}" for i in range(32)])
    negcon = pcs[(wells["Metadata_pert_type"] == "negcon").to_numpy()]
    sphere = Spherize(epsilon=cfg.sphering_epsilon, center=True, method="ZCA-cor")
    library = sphere.fit(negcon).transform(pcs)
    assert feature_columns(got) == list(pcs.columns)
    np.testing.assert_allclose(got[list(pcs.columns)], library, rtol=1e-9, atol=1e-9)


def test_mad_step_equals_pycytominer_per_plate_and_median_mad() -> None:
    """Per plate, (x - median) / (1.4826 median |x - median| + 1e-18) over all its wells."""
    from pycytominer import normalize

    wells = design_wells()
    meta, features = metadata_columns(wells), feature_columns(wells)
    got = by_well(STEPS["mad"](wells, ProfileConfig()))
    library = by_well(
        pd.concat(
            normalize(plate, features=features, meta_features=meta, samples="all",
                      method="mad_robustize", output_type=None)
            for _, plate in wells.groupby("Metadata_Plate")
        )
    )  # fmt: skip
    pd.testing.assert_frame_equal(got, library, check_exact=False, rtol=1e-12)
    expected = []
    for _, plate in by_well(wells).groupby("Metadata_Plate", sort=False):
        x = plate[features].to_numpy()
        median = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - median), axis=0)
        expected.append((x - median) / (mad + 1e-18))
    np.testing.assert_allclose(got[features], np.concatenate(expected), rtol=1e-12, atol=1e-12)
    pd.testing.assert_frame_equal(got[meta], by_well(wells)[meta])


def test_align_step_equals_pycytominer_per_plate_on_negcons_and_negcon_median_mad() -> None:
    """Per plate, (x - m) / (1.4826 median |x_neg - m| + 1e-18), m the negcons' median."""
    from pycytominer import normalize

    wells = design_wells()
    meta, features = metadata_columns(wells), feature_columns(wells)
    got = by_well(STEPS["align"](wells, ProfileConfig()))
    library = by_well(
        pd.concat(
            normalize(plate, features=features, meta_features=meta,
                      samples="Metadata_pert_type == 'negcon'", method="mad_robustize",
                      output_type=None)
            for _, plate in wells.groupby("Metadata_Plate")
        )
    )  # fmt: skip
    pd.testing.assert_frame_equal(got, library, check_exact=False, rtol=1e-12)
    expected = []
    for _, plate in by_well(wells).groupby("Metadata_Plate", sort=False):
        x = plate[features].to_numpy()
        negcon = x[(plate["Metadata_pert_type"] == "negcon").to_numpy()]
        median = np.median(negcon, axis=0)
        mad = 1.4826 * np.median(np.abs(negcon - median), axis=0)
        expected.append((x - median) / (mad + 1e-18))
    np.testing.assert_allclose(got[features], np.concatenate(expected), rtol=1e-12, atol=1e-12)
    pd.testing.assert_frame_equal(got[meta], by_well(wells)[meta])
    mad_step = by_well(STEPS["mad"](wells, ProfileConfig()))[features]
    assert np.abs(got[features] - mad_step).to_numpy().max() > 0.1  # not the all-wells fit


def test_align_gives_each_plate_negcon_median_0_and_spread_1() -> None:
    """z = (x - m) / s in float64: each rounds by about eps (|x| + |m|) / s, so the negcons'
    median and 1.4826 MAD of z miss 0 and 1 by at most a few eps max|x| / min s."""
    wells = planted_wells()
    aligned = STEPS["align"](wells, ProfileConfig())
    features = feature_columns(wells)
    negcon = aligned[aligned["Metadata_pert_type"] == "negcon"].groupby("Metadata_Plate")
    medians = negcon[features].median()
    spread = 1.4826 * negcon[features].apply(lambda z: (z - z.median()).abs().median())
    raw = wells[wells["Metadata_pert_type"] == "negcon"].groupby("Metadata_Plate")[features]
    scale = 1.4826 * raw.apply(lambda x: (x - x.median()).abs().median())
    atol = 4 * np.finfo(float).eps * np.abs(wells[features]).to_numpy().max() / scale.min().min()
    np.testing.assert_allclose(medians.to_numpy(), 0, atol=atol)
    np.testing.assert_allclose(spread.to_numpy(), 1, atol=atol)
    assert len(medians) == 4  # every plate
    assert np.abs(raw.median().to_numpy()).min() > 10 * atol  # plate offsets were removed


def test_align_drops_features_with_zero_negcon_mad_on_some_plate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wells = planted_wells()
    rng = np.random.default_rng(3)
    negcon_p0 = (wells["Metadata_Plate"] == "P0") & (wells["Metadata_pert_type"] == "negcon")
    constant = np.where(negcon_p0, 1.0, rng.normal(0, 1, len(wells)))  # on P0's DMSO wells
    wells = wells.assign(f_count=constant)
    with caplog.at_level("WARNING"):
        aligned = STEPS["align"](wells, ProfileConfig())
    assert "f_count" not in aligned
    assert feature_columns(aligned) == [c for c in feature_columns(wells) if c != "f_count"]
    assert "MAD 0 among the wells where Metadata_pert_type == 'negcon'" in caplog.text
    assert "f_count" in STEPS["mad"](wells, ProfileConfig())  # its MAD over all wells is not 0


def test_align_names_plates_without_negative_controls() -> None:
    wells = planted_wells()
    wells.loc[wells["Metadata_Plate"] == "P2", "Metadata_pert_type"] = "trt"
    with pytest.raises(ValueError, match=r"plate\(s\) P2 have none.*step mad"):
        STEPS["align"](wells, ProfileConfig())


def test_featselect_step_equals_pycytominer_feature_select() -> None:
    from pycytominer import feature_select

    wells = design_wells(n_features=8)
    rng = np.random.default_rng(1)
    wells["f_0001"] = 2 * wells["f_0000"] + 0.01 * rng.standard_normal(len(wells))  # r > 0.9
    wells["f_0002"] = 3.0  # no variance
    wells.loc[::10, "f_0003"] = np.nan  # 10 % missing > na_cutoff 0.05
    got = STEPS["featselect"](wells, ProfileConfig())
    operations = ["frequency_threshold", "correlation_threshold", "drop_na_columns", "blocklist"]
    library = feature_select(wells, features=feature_columns(wells), operation=operations,
                             corr_threshold=0.9, na_cutoff=0.05)  # fmt: skip
    pd.testing.assert_frame_equal(got, library)
    dropped = set(feature_columns(wells)) - set(feature_columns(got))
    assert dropped - {"f_0000", "f_0001"} == {"f_0002", "f_0003"}
    assert len(dropped & {"f_0000", "f_0001"}) == 1  # one of the correlated pair


@pytest.mark.parametrize("n_features", [32, 448], ids=["wide", "square"])
def test_harmony_step_equals_harmonypy(n_features: int) -> None:
    """Also with as many features as wells, where harmonypy takes rows as features."""
    import harmonypy

    wells = design_wells(n_features)
    cfg = ProfileConfig(harmony=True, harmony_iterations=3)
    got = STEPS["harmony"](wells, cfg)
    meta, features = metadata_columns(wells), feature_columns(wells)
    result = harmonypy.run_harmony(
        wells[features].to_numpy().T,  # features x wells: unambiguous for harmonypy
        wells[meta],
        ["Metadata_Batch"],
        nclust=448 // 30,  # harmony_clusters (300) capped at one cluster per 30 wells
        max_iter_harmony=3,
        random_state=0,
        verbose=False,
    )
    assert result.Z_corr.shape == (len(wells), len(features))
    pd.testing.assert_frame_equal(got[meta], wells[meta])
    np.testing.assert_allclose(got[features], result.Z_corr, rtol=1e-9, atol=1e-9)


def test_wells_without_any_feature_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    wells = planted_wells()
    features = feature_columns(wells)
    wells.loc[[0, 5], features] = np.nan  # no cell segmented in two wells
    wells.loc[7, features[0]] = np.nan  # one undefined feature: the well stays
    with caplog.at_level("WARNING"):
        kept = drop_wells_without_features(wells)
    assert len(kept) == len(wells) - 2
    assert "leaving out 2 of" in caplog.text
    with pytest.raises(ValueError, match="only NaN features"):
        drop_wells_without_features(wells.assign(**dict.fromkeys(features, np.nan)))
