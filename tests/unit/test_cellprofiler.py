"""CellProfiler-style baseline: segmentation accuracy, cp-measure values, plate table, selection.

Segmentation truth on synthetic sites: the generator places cell centres first
(``render.render_cells`` -> ``_place_cells``) and keeps no record of them, so
``placed_centres`` replays those draws. It checks itself: the replayed site equals
``render_site``, and the replayed centres fall inside the noise-free nuclei.
"""

import inspect
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from cp_measure.bulk import get_core_measurements, get_correlation_measurements
from cp_measure.core.numba.measuretexture import get_texture as numba_texture
from pycytominer import feature_select
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries, relabel_sequential

from paintssl.embed.cellprofiler import (
    CellProfilerConfig,
    feature_names,
    measure_plate,
    measure_site,
    site_features,
)
from paintssl.embed.segment import nucleus_settings, segment_cells, segment_nuclei
from paintssl.preprocess.codec import read_scaled_site, to_uint16
from paintssl.preprocess.images import scale_to_unit
from paintssl.preprocess.plate import count_nuclei, dna_otsu
from paintssl.profiles.normalize import select_features
from paintssl.synthetic.config import BASE_SITE, SyntheticConfig, rng_for
from paintssl.synthetic.plate import PlateContext, plate_context, render_site
from paintssl.synthetic.render import _place_cells, acquire, phenotype, render_cells
from paintssl.tables import CHANNELS, WELL_KEYS

SYNTHETIC_DIAMETER = 18.0  # U2OS nuclei are ~20 px across, A549 ~17 px (synthetic.config)


def placed_centres(
    ctx: PlateContext, well: str, site: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw site, the centres (y, x) of the cells placed on it, and a replay check.

    The check is, per centre inside the site, whether it lies in a noise-free nucleus
    (nearly all do; a wrong replay would hit nuclei at random, ~20 % of the area).
    """
    cfg, optics, w = ctx.cfg, ctx.optics, ctx.layout["well"].tolist().index(well)
    row = ctx.layout.iloc[w]  # the steps of synthetic.plate._site, keeping the objects
    pheno = phenotype(ctx.morph, row["latent"], optics.pixel_scale)
    edge = cfg.edge_effect * row["edge"]
    area = (cfg.site_size / BASE_SITE) ** 2 / optics.pixel_scale**2
    n_expected = cfg.cells_per_site * ctx.morph.density * area * pheno.count_factor
    n_expected *= ctx.density * (1.0 - edge)
    rng = rng_for(cfg, "site", ctx.name, w, site)
    objects = render_cells(pheno, n_expected, cfg.cell_variability, cfg.site_size, rng)
    gain = ctx.drift * (1.0 + edge * ctx.edge_gain)
    raw = acquire(objects, optics, gain, ctx.illum, ctx.background, rng)
    assert np.array_equal(raw, render_site(ctx, well, site)), "replay differs from _site"
    rng = rng_for(cfg, "site", ctx.name, w, site)  # render_cells' first draws
    nuc_a = pheno.nucleus_radius * math.sqrt(pheno.nucleus_elongation)
    centres = _place_cells(rng, rng.poisson(n_expected), cfg.site_size, 2.1 * nuc_a)
    inside = np.floor(centres[((centres >= 0) & (centres < cfg.site_size)).all(1)]).astype(int)
    return raw, centres, objects[0][inside[:, 0], inside[:, 1]] > 0


def scaled(raw: np.ndarray) -> np.ndarray:
    """Clip and scale a raw site like preprocess_plate (percentiles of this site only)."""
    low, high = np.percentile(raw, [0.01, 99.9], axis=(1, 2))
    return scale_to_unit(raw, low, high)


def discs(shape: tuple[int, int], centres: list[tuple[int, int]], radius: float) -> np.ndarray:
    """Label image of discs, labelled 1.. in order (later discs overwrite earlier ones)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, 1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return labels


def test_nucleus_settings_scale_the_manifest_cell_count_rule() -> None:
    defaults = {k: p.default for k, p in inspect.signature(count_nuclei).parameters.items()}
    assert nucleus_settings(30.0) == {k: defaults[k] for k in ("sigma", "min_area", "min_distance")}
    assert nucleus_settings(15.0) == {"sigma": 1.0, "min_area": 8, "min_distance": 4}


def test_touching_discs_are_split_and_cells_keep_their_nucleus() -> None:
    isolated = [(30 + 60 * i, 30 + 60 * j) for i in range(3) for j in range(3)]
    pairs = [(210, 25 + 60 * k) for k in range(3)]
    centres = [*isolated, *pairs, *[(y, x + 17) for y, x in pairs]]  # 3 touching pairs
    truth = discs((256, 256), centres, 10)
    dna = ndi.gaussian_filter((truth > 0).astype(np.float32), 1.0)
    nuclei = segment_nuclei(dna, otsu=0.5, nucleus_diameter=20.0)
    assert nuclei.max() == len(centres) == 15
    assert len(set(nuclei[tuple(np.array(centres).T)])) == 15  # one nucleus per disc
    cytoplasm = ndi.gaussian_filter((discs((256, 256), isolated, 24) > 0).astype(np.float32), 1)
    cells = segment_cells(nuclei, 0.2 + 0.8 * cytoplasm, threshold=0.5)
    assert set(np.unique(cells)) == set(np.unique(nuclei))
    assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()
    areas = np.bincount(cells.ravel())[nuclei[tuple(np.array(isolated).T)]]
    np.testing.assert_allclose(areas, np.pi * 24**2, rtol=0.05)


def test_segmentation_finds_the_synthetic_nuclei() -> None:
    """Interior nuclei (> one diameter from the border) of 16 sites, U2OS and A549.

    Measured when written: 124 true interior nuclei, 123 segmented (count error 0.8 %),
    121 hit one-to-one (recall 97.6 %), no merge; the tolerances are 10 % and 90 %.
    """
    cfg, margin = SyntheticConfig(site_size=224, sites_per_well=2), SYNTHETIC_DIAMETER
    n_true = n_segmented = n_found = n_merged = n_counted = n_rule = 0
    replay_hits = []
    for plate in ("src01_b01_p01", "src03_b01_p01"):
        ctx = plate_context(cfg, plate)
        for well, site in [(w, s) for w in ("B03", "C05", "D07", "E09") for s in (1, 2)]:
            raw, centres, in_nucleus = placed_centres(ctx, well, site)
            replay_hits.append(in_nucleus)
            dna = scaled(raw)[CHANNELS.index("DNA")]
            nuclei = segment_nuclei(dna, dna_otsu(dna), SYNTHETIC_DIAMETER)
            size = cfg.site_size
            inside = centres[((centres >= 0) & (centres < size)).all(1)]
            hit = nuclei[tuple(np.floor(inside).astype(int).T)]
            per_label = np.bincount(hit, minlength=nuclei.max() + 1)
            interior = ((inside >= margin) & (inside < size - margin)).all(1)
            ids = np.arange(1, nuclei.max() + 1)
            com = np.array(ndi.center_of_mass(nuclei > 0, nuclei, ids)).reshape(-1, 2)
            n_true += int(interior.sum())
            n_segmented += int(((com >= margin) & (com < size - margin)).all(1).sum())
            n_found += int(((hit > 0) & (per_label[hit] == 1))[interior].sum())
            n_merged += int((per_label[1:] > 1).sum())
            n_counted += int(nuclei.max())
            n_rule += count_nuclei(dna, dna_otsu(dna), **nucleus_settings(SYNTHETIC_DIAMETER))
    assert np.concatenate(replay_hits).mean() > 0.95, "replayed centres are not the cells"
    assert n_true > 100
    assert abs(n_segmented - n_true) <= 0.10 * n_true
    assert n_found >= 0.90 * n_true
    assert n_merged <= 0.02 * n_true
    # the manifest's count rule counts split pieces under min_area that segmentation merges
    assert 0.9 * n_rule <= n_counted <= n_rule


@pytest.fixture(scope="module")
def rendered_site() -> tuple[np.ndarray, pd.DataFrame]:
    cfg = SyntheticConfig(site_size=224, sites_per_well=1)
    image = scaled(render_site(plate_context(cfg, "src01_b01_p01"), "C05", 1))
    otsu = dna_otsu(image[CHANNELS.index("DNA")])
    features = site_features(image, CHANNELS, otsu, CellProfilerConfig(SYNTHETIC_DIAMETER))
    return image, features


def test_features_of_a_rendered_site_are_finite_and_named_like_cellprofiler(
    rendered_site: tuple[np.ndarray, pd.DataFrame],
) -> None:
    _, table = rendered_site
    assert len(table) >= 5
    assert list(table.columns[1:]) == list(feature_names(tuple(CHANNELS)))
    values = table.drop(columns="Metadata_ObjectNumber")
    assert not np.isinf(values.to_numpy()).any()
    nan = values.isna()
    assert not nan.loc[:, ~values.columns.str.contains("_Texture_")].any().any()  # documented
    assert nan.to_numpy().mean() <= 0.01
    names = [
        "Cells_Intensity_MeanIntensity_DNA", "Nuclei_AreaShape_Area",
        "Cells_Correlation_Correlation_DNA_ER", "Cells_Correlation_Manders_ER_DNA",
        "Cytoplasm_Texture_Contrast_ER_3_00_256", "Nuclei_Granularity_1_Mito",
        "Cells_RadialDistribution_FracAtD_RNA_1of4", "Cells_AreaShape_Zernike_0_0",
    ]  # fmt: skip
    assert set(names) <= set(table.columns)
    assert not values.columns.str.contains("Location|Center_|BoundingBoxM").any()
    assert (table["Nuclei_AreaShape_Area"] < table["Cells_AreaShape_Area"]).all()
    assert (table["Cytoplasm_AreaShape_Area"] > 0).all()


def tiny_objects() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five channels of smooth noise, three cells with nuclei, labels with gaps (2, 5, 9)."""
    rng = np.random.default_rng(1)
    image = ndi.gaussian_filter(rng.random((5, 80, 80)), (0, 2, 2)).astype(np.float32)
    image = (image - image.min()) / (image.max() - image.min())
    centres = [(20, 20), (25, 58), (58, 40)]
    cells, nuclei = discs((80, 80), centres, 14), discs((80, 80), centres, 6)
    relabel = np.array([0, 2, 5, 9], np.int32)
    return image, relabel[nuclei], relabel[cells]


def test_measure_site_returns_cp_measure_values_unchanged() -> None:
    image, nuclei, cells = tiny_objects()
    table = measure_site(image, CHANNELS, nuclei, cells)
    assert table["Metadata_ObjectNumber"].tolist() == [2, 5, 9]
    core, corr = get_core_measurements(), get_correlation_measurements()
    dna, er = image[0], image[1]
    dense = relabel_sequential(cells)[0]  # the numba texture has no relabelling wrapper
    intensity, pearson = core["intensity"](cells, dna), corr["pearson"](dna, er, cells)
    radial = core["radial_distribution"](cells, er)
    same = {
        "Cells_Intensity_MeanIntensity_DNA": intensity["Intensity_MeanIntensity"],
        "Nuclei_AreaShape_Area": core["sizeshape"](nuclei, None, calculate_advanced=False)["Area"],
        "Cells_AreaShape_Zernike_2_0": core["zernike"](cells, None)["Zernike_2_0"],
        "Cells_RadialDistribution_MeanFrac_ER_2of4": radial["RadialDistribution_MeanFrac_2of4"],
        "Cells_Texture_Entropy_DNA_3_01_256": numba_texture(dense, dna)["Entropy_3_01_256"],
        "Cells_Correlation_Correlation_DNA_ER": pearson["Correlation_Pearson"],
        "Cells_Correlation_Slope_DNA_ER": pearson["Correlation_Slope"],
        "Nuclei_Correlation_RWC_ER_DNA": corr["rwc"](dna, er, nuclei)["Correlation_RWC_2"],
    }
    for column, expected in same.items():
        np.testing.assert_array_equal(table[column], np.asarray(expected, float), column)
    # granularity: one cp-measure call for all compartments, pooled (to round-off)
    granularity = core["granularity"](nuclei, er)["Granularity_3"]
    np.testing.assert_allclose(table["Nuclei_Granularity_3_ER"], granularity, rtol=1e-12)
    # the numba texture we call agrees with cp-measure's default (numpy/mahotas) texture
    default = core["texture"](cells, dna)
    for key, values in numba_texture(dense, dna).items():
        np.testing.assert_allclose(values, default[key], rtol=1e-5, atol=1e-8, err_msg=key)
    shrunk = np.where(find_boundaries(nuclei, mode="inner"), 0, nuclei)
    cytoplasm = np.where(shrunk > 0, 0, cells)
    expected = core["intensity"](cytoplasm, er)["Intensity_MedianIntensity"]
    np.testing.assert_array_equal(table["Cytoplasm_Intensity_MedianIntensity_ER"], expected)


def write_site(root: Path, name: str, centres: list[tuple[int, int]], level: float) -> dict:
    """A merged uint16 site of disc cells (nucleus r=6 in a cell r=14) and its manifest row."""
    nuclei, cells = discs((96, 96), centres, 6), discs((96, 96), centres, 14)
    image = np.stack([
        ndi.gaussian_filter((nuclei > 0) * 0.9, 1.0),  # DNA
        0.3 * (cells > 0) + 0.05,  # ER
        ndi.gaussian_filter((cells > 0) * level, 1.0) + 0.05,  # RNA: the cells' extent
        ndi.gaussian_filter((cells > 0) * 0.5 * (1 + np.arange(96) / 96), 1.0),  # AGP
        0.2 * (cells > 0) + 0.1 * (nuclei > 0),  # Mito
    ]).astype(np.float32)  # fmt: skip
    tifffile.imwrite(root / "sites" / f"{name}.tiff", to_uint16(image))
    return {"path": f"sites/{name}.tiff", "channels": ",".join(CHANNELS), "height": 96,
            "width": 96, "dna_otsu": dna_otsu(image[0]), "cell_count": len(centres)}  # fmt: skip


def test_measure_plate_writes_the_median_of_each_well(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "sites").mkdir()
    layout = {  # well -> sites -> cell centres (never touching the border)
        "A01": [[(25, 25), (25, 70), (70, 48)], [(30, 40), (66, 60)]],
        "A02": [[(48, 48)], [(25, 25), (70, 70)]],
        "A03": [[]],  # no cells: NaN features
    }
    rows = []
    for w, (well, sites) in enumerate(layout.items()):
        for s, centres in enumerate(sites, 1):
            row = write_site(tmp_path, f"{well}_{s}", centres, level=0.5 + 0.2 * w)
            rows.append({"Metadata_Source": "s1", "Metadata_Batch": "b1", "Metadata_Plate": "p1",
                         "Metadata_Well": well, "Metadata_Site": str(s), **row})  # fmt: skip
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_parquet(tmp_path / "manifest.parquet")
    cfg = CellProfilerConfig(nucleus_diameter=12, feature_groups=("sizeshape", "intensity"))
    with caplog.at_level(logging.WARNING):
        measure_plate(tmp_path / "manifest.parquet", tmp_path / "out/wells.parquet", cfg)
    wells = pd.read_parquet(tmp_path / "out/wells.parquet")
    assert not list((tmp_path / "out").glob("*.tmp"))
    assert list(wells.columns[:6]) == [*WELL_KEYS, "Metadata_n_sites", "Metadata_cell_count"]
    assert wells["Metadata_Well"].tolist() == ["A01", "A02", "A03"]
    assert wells["Metadata_n_sites"].tolist() == [2, 2, 1]
    assert wells["Metadata_cell_count"].tolist() == [5, 3, 0]
    assert "A03: no cells segmented" in caplog.text
    features = list(wells.columns[6:])
    assert features == list(feature_names(tuple(CHANNELS), cfg.feature_groups, cfg.compartments))
    for i, (well, sites) in enumerate(layout.items()):
        if well == "A03":
            assert wells.loc[i, features].isna().all()
            continue
        cells = []
        for s in range(1, len(sites) + 1):
            image = read_scaled_site(tmp_path / f"sites/{well}_{s}.tiff")
            cells.append(site_features(image, CHANNELS, dna_otsu(image[0]), cfg))
        expected = pd.concat(cells)[features].median()
        np.testing.assert_allclose(wells.loc[i, features].astype(float), expected)
    areas = wells.loc[:1, "Nuclei_AreaShape_Area"]
    np.testing.assert_allclose(areas, np.pi * 36, rtol=0.1)  # median nucleus: a disc of r=6


def test_select_features_is_pycytominer_feature_select() -> None:
    rng = np.random.default_rng(0)
    n = 40
    base = rng.normal(size=n)
    wells = pd.DataFrame({
        "Metadata_Plate": "p", "Metadata_Well": [f"A{i:02d}" for i in range(n)],
        "Cells_AreaShape_Area": base,
        "Cells_AreaShape_Perimeter": base * 2 + rng.normal(scale=0.01, size=n),  # r > 0.9
        "Cells_Intensity_MeanIntensity_DNA": rng.normal(size=n),
        "Nuclei_AreaShape_Solidity": np.ones(n),  # no variance
        "Cytoplasm_Intensity_MeanIntensity_ER": np.where(np.arange(n) < 10, np.nan, base**2),
        "Nuclei_Correlation_Manders_AGP_DNA": rng.normal(size=n),  # blocklisted
        "Nuclei_Granularity_2_RNA": rng.normal(size=n),
    })  # fmt: skip
    selected = select_features(wells)
    operations = ["frequency_threshold", "correlation_threshold", "drop_na_columns", "blocklist"]
    features = [c for c in wells.columns if not c.startswith("Metadata_")]
    expected = feature_select(wells, features=features, operation=operations)
    pd.testing.assert_frame_equal(selected, expected)
    kept = set(selected.columns) - {"Metadata_Plate", "Metadata_Well"}
    assert kept - {"Cells_AreaShape_Area", "Cells_AreaShape_Perimeter"} == {
        "Cells_Intensity_MeanIntensity_DNA",
        "Nuclei_Granularity_2_RNA",
    }
    assert len(kept) == 3  # one of the correlated pair


def test_config_rejects_unknown_groups_and_compartments() -> None:
    with pytest.raises(ValueError, match="feature_groups"):
        CellProfilerConfig(feature_groups=("intensity", "haralick"))
    with pytest.raises(ValueError, match="compartments"):
        CellProfilerConfig(compartments=("Cells", "Golgi"))
    assert CellProfilerConfig(feature_groups=["intensity"]).feature_groups == ("intensity",)
