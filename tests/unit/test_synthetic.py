"""Tests of the built-in synthetic JUMP-like dataset (tiny configurations, rendered in tmp_path)."""

import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage import filters, measure

from paintssl.synthetic.config import DMSO_ID, SyntheticConfig
from paintssl.synthetic.layout import plate_sheet, render_metadata
from paintssl.synthetic.plate import plate_context, render_plate, render_site
from paintssl.tables import CHANNELS

TINY = SyntheticConfig(
    site_size=64,
    sites_per_well=1,
    sources_per_cell_line=1,
    batches_per_source=1,
    n_targets=4,
    compounds_per_target=3,
    n_dual_target_compounds=2,
    n_gene_families=3,
    genes_per_family=4,
)


def render(cfg: SyntheticConfig, root: Path, plate: str) -> pd.DataFrame:
    """Render ``plate`` as the workflow does and return its load_data table."""
    load_data = root / plate / "load_data.csv"
    render_plate(cfg, plate, load_data, root / plate / "images")
    return pd.read_csv(load_data)


def read_channel(load_data: Path, row: pd.Series, channel: str) -> np.ndarray:
    return tifffile.imread(
        load_data.parent / row[f"PathName_Orig{channel}"] / row[f"FileName_Orig{channel}"]
    )


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("meta")
    render_metadata(TINY, root / "meta.parquet", root / "truth.parquet")
    return pd.read_parquet(root / "meta.parquet"), pd.read_parquet(root / "truth.parquet")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """One rendered plate per source: the root folder and each plate's load_data table."""
    root = tmp_path_factory.mktemp("plates")
    plates = plate_sheet(TINY, root).drop_duplicates("source")["plate"]
    return root, {plate: render(TINY, root, plate) for plate in plates}


def test_plate_sheet_has_jump_hierarchy() -> None:
    sheet = plate_sheet(SyntheticConfig(), "data/synthetic")
    assert list(sheet.columns) == ["plate", "batch", "source", "split", "load_data"]
    assert len(sheet) == 16
    assert sheet["plate"].is_monotonic_increasing
    assert sheet["plate"].is_unique
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in sheet["plate"])
    assert sheet["source"].nunique() == 4
    assert (sheet.groupby("source")["batch"].nunique() == 2).all()
    assert (sheet.groupby("batch")["plate"].nunique() == 2).all()
    first = sheet.iloc[0]
    assert first["load_data"] == f"data/synthetic/{first['plate']}/load_data.csv"


def test_plate_sheet_holds_out_the_last_plate_of_every_batch() -> None:
    sheet = plate_sheet(SyntheticConfig(plates_per_batch=3), "data/synthetic")
    assert (sheet.groupby("batch")["split"].value_counts().unstack() == [1, 2]).all().all()
    assert set(sheet.loc[sheet["split"] == "eval", "plate"].str[-3:]) == {"p03"}
    for key in ("batch", "source"):  # every batch and source in both splits
        assert (sheet.groupby(key)["split"].nunique() == 2).all()
    unsplit = plate_sheet(SyntheticConfig(eval_plates_per_batch=0), "data/synthetic")
    assert unsplit["split"].isna().all()
    with pytest.raises(ValueError, match=r"eval_plates_per_batch.*set it to 0"):
        SyntheticConfig(plates_per_batch=1)


def test_render_plate_writes_resolvable_load_data(
    rendered: tuple[Path, dict[str, pd.DataFrame]], tmp_path: Path
) -> None:
    root, load_datas = rendered
    sheet = plate_sheet(TINY, root).set_index("plate")
    for plate, load_data in load_datas.items():
        assert len(load_data) == 96 * TINY.sites_per_well
        assert (load_data["Metadata_Plate"] == plate).all()
        assert (load_data["Metadata_Source"] == sheet.loc[plate, "source"]).all()
        assert (load_data["Metadata_Batch"] == sheet.loc[plate, "batch"]).all()
        assert load_data["Metadata_Well"].str.fullmatch(r"[A-H](0[1-9]|1[0-2])").all()
        assert Path(sheet.loc[plate, "load_data"]).is_file()
        for channel in CHANNELS:
            assert (load_data[f"PathName_Orig{channel}"] == "images").all()
    plate, load_data = next(iter(load_datas.items()))
    moved = shutil.copytree(root / plate, tmp_path / "moved")  # relative paths: movable
    row = load_data.iloc[-1]
    for channel in CHANNELS:
        image = read_channel(moved / "load_data.csv", row, channel)
        assert image.shape == (TINY.site_size, TINY.site_size)
        assert image.dtype == np.uint16


def test_rendering_is_deterministic_by_seed(
    rendered: tuple[Path, dict[str, pd.DataFrame]], tmp_path: Path
) -> None:
    root, load_datas = rendered
    plate = next(iter(load_datas))
    render(TINY, tmp_path, plate)
    assert folder_bytes(tmp_path / plate) == folder_bytes(root / plate)
    other = SyntheticConfig(**asdict(TINY) | {"seed": 1})
    assert not np.array_equal(
        render_site(plate_context(TINY, plate), "B02", 1),
        render_site(plate_context(other, plate), "B02", 1),
    )
    for i, cfg in enumerate((TINY, TINY, other)):
        render_metadata(cfg, tmp_path / f"meta_{i}.parquet", tmp_path / f"truth_{i}.parquet")
    tables = [
        (tmp_path / f"{t}_{i}.parquet").read_bytes() for t in ("meta", "truth") for i in range(3)
    ]
    assert tables[0] == tables[1]
    assert tables[3] == tables[4]
    assert tables[3] != tables[5]


def test_channels_map_by_name_across_sources(
    rendered: tuple[Path, dict[str, pd.DataFrame]],
) -> None:
    root, load_datas = rendered
    orders = set()
    for plate, load_data in load_datas.items():
        orders.add(tuple(c for c in load_data.columns if c.startswith("FileName_Orig")))
        row = load_data.iloc[7]
        expected = render_site(
            plate_context(TINY, plate), row["Metadata_Well"], int(row["Metadata_Site"])
        )
        for c, channel in enumerate(CHANNELS):
            image = read_channel(root / plate / "load_data.csv", row, channel)
            np.testing.assert_array_equal(image, expected[c])
    assert len(orders) == len(load_datas) > 1
    assert all(sorted(o) == sorted(f"FileName_Orig{c}" for c in CHANNELS) for o in orders)


@pytest.mark.parametrize("plate", ["src01_b01_p01", "src03_b01_p01"])
def test_dna_channel_shows_nuclei(plate: str) -> None:
    cfg = SyntheticConfig(site_size=224, sites_per_well=1)
    image = render_site(plate_context(cfg, plate), "C05", 1).astype(float)
    dna, agp = image[CHANNELS.index("DNA")], image[CHANNELS.index("AGP")]
    nuclei = measure.label(dna > filters.threshold_otsu(dna))
    props = [p for p in measure.regionprops(nuclei) if p.area >= 20]
    assert 5 <= len(props) <= 40
    assert np.median([p.solidity for p in props]) > 0.85  # compact blobs
    assert 0.01 < (nuclei > 0).mean() < 0.3
    assert np.corrcoef(dna.ravel(), agp.ravel())[0, 1] < 0.6


def test_raw_intensities_differ_between_sources(tmp_path: Path) -> None:
    sheet = plate_sheet(TINY, tmp_path)
    plates = sheet.drop_duplicates("source")["plate"].tolist()
    peaks = [np.percentile(render_site(plate_context(TINY, p), "D06", 1), 99.9) for p in plates]
    assert all(200 < p < 65535 for p in peaks)
    assert max(peaks) / min(peaks) > 1.5


def test_metadata_layout(tiny_tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    meta, _ = tiny_tables
    plates = plate_sheet(TINY, ".")["plate"]
    assert set(meta["Metadata_Plate"]) == set(plates)
    assert not meta.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    assert set(meta["Metadata_pert_type"]) == {"trt", "negcon", "poscon"}
    for _, wells in meta.groupby("Metadata_Plate"):
        counts = wells["Metadata_pert_type"].value_counts()
        assert counts["negcon"] >= TINY.n_negcon_wells
        assert counts["poscon"] == TINY.n_poscon_wells
        assert (
            wells.loc[wells["Metadata_pert_type"] == "negcon", "Metadata_JCP2022"] == DMSO_ID
        ).all()
    trt = meta[meta["Metadata_pert_type"] == "trt"]
    per_line = trt.groupby("Metadata_cell_line")
    n_plates = meta.groupby("Metadata_cell_line")["Metadata_Plate"].nunique()
    replicates = trt.groupby(["Metadata_cell_line", "Metadata_JCP2022"])["Metadata_Plate"].nunique()
    assert (replicates == replicates.index.get_level_values(0).map(n_plates)).all()
    assert (per_line["Metadata_JCP2022"].nunique() == TINY.n_wells_used - 16 - 4).all()
    genes = trt[trt["Metadata_gene"].notna()]
    assert genes["Metadata_gene_family"].notna().all()
    assert genes["Metadata_target"].isna().all()
    compounds = trt[trt["Metadata_gene"].isna()]
    assert compounds["Metadata_target"].notna().all()
    dual = compounds[compounds["Metadata_target"].str.contains("|", regex=False)]
    assert dual["Metadata_JCP2022"].nunique() == TINY.n_dual_target_compounds
    positions = meta[meta["Metadata_JCP2022"] == DMSO_ID].groupby("Metadata_Plate")["Metadata_Well"]
    assert positions.apply(frozenset).nunique() == len(plates)  # shuffled per plate


def test_ground_truth_structure(tiny_tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    meta, truth = tiny_tables
    assert truth[["Metadata_Plate", "Metadata_Well"]].equals(
        meta[["Metadata_Plate", "Metadata_Well"]]
    )
    cols = [c for c in truth.columns if c.startswith("truth_")]
    assert cols[0] == "truth_0000"
    assert len(cols) >= 8
    wells = pd.concat([meta, truth[cols]], axis=1)
    line = wells[wells["Metadata_cell_line"] == TINY.cell_lines[0]]
    dmso = line.loc[line["Metadata_JCP2022"] == DMSO_ID, cols].to_numpy()
    assert np.abs(dmso.mean(axis=0)).max() < 0.2
    assert dmso.std() == pytest.approx(TINY.well_noise, rel=0.2)
    trt = line[line["Metadata_pert_type"] == "trt"]
    centroids = trt.groupby("Metadata_JCP2022")[cols].mean()
    spread = trt.groupby("Metadata_JCP2022")[cols].std().to_numpy().mean()
    assert spread == pytest.approx(TINY.well_noise, rel=0.25)  # replicates share one latent
    assert centroids.to_numpy().std() > 2 * spread
    labels = trt.groupby("Metadata_JCP2022")[["Metadata_target", "Metadata_gene_family"]].first()
    for key in ("Metadata_target", "Metadata_gene_family"):
        group = labels[key].dropna()
        group = group[~group.str.contains("|", regex=False)]
        x = centroids.loc[group.index].to_numpy()
        dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
        same = group.to_numpy()[:, None] == group.to_numpy()[None]
        off_diagonal = ~np.eye(len(x), dtype=bool)
        assert dist[same & off_diagonal].mean() < 0.8 * dist[~same].mean()
    poscon = line.loc[line["Metadata_pert_type"] == "poscon", cols].mean().to_numpy()
    assert np.linalg.norm(poscon) > 2 * np.median(np.linalg.norm(centroids.to_numpy(), axis=1))


def test_invalid_configs_and_plates_are_rejected() -> None:
    with pytest.raises(ValueError, match="plate_format"):
        SyntheticConfig(plate_format=100)
    with pytest.raises(TypeError):
        SyntheticConfig(**{"n_plates": 3})
    with pytest.raises(ValueError, match="cell_lines"):
        SyntheticConfig(cell_lines=("HeLa",))
    with pytest.raises(ValueError, match="384"):
        SyntheticConfig(n_targets=40)
    with pytest.raises(ValueError, match="site_size"):
        SyntheticConfig(site_size=16)
    with pytest.raises(ValueError, match=r"valid: src01_b01_p01"):
        plate_context(TINY, "no_such_plate")
    with pytest.raises(ValueError, match="no site 9"):
        render_site(plate_context(TINY, "src01_b01_p01"), "A01", 9)
    with pytest.raises(ValueError, match="valid"):
        render_plate(TINY, "no_such_plate", "x/load_data.csv", "x/images")
    assert SyntheticConfig(cell_lines=["A549"]).cell_lines == ("A549",)  # YAML lists accepted
