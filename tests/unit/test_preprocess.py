"""preprocess_plate: clipping, merged TIFFs, manifest schema, QC numbers and failure hygiene."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from paintssl.inputs import InputError
from paintssl.preprocess.codec import read_site_tiff
from paintssl.preprocess.plate import PreprocessConfig, count_nuclei, dna_otsu, preprocess_plate
from paintssl.tables import CHANNELS

FILE_ORDER = ("Mito", "AGP", "DNA", "RNA", "ER")  # any order; mapped by name
MANIFEST_DTYPES = {
    "Metadata_Source": "str",
    "Metadata_Batch": "str",
    "Metadata_Plate": "str",
    "Metadata_Well": "str",
    "Metadata_Site": "str",
    "path": "str",
    "channels": "str",
    "height": "int",
    "width": "int",
    "dna_otsu": "float",
    "foreground_fraction": "float",
    "cell_count": "int",
    **{f"{stat}_{ch}": "float" for ch in CHANNELS for stat in ("mean", "std")},
    **{f"clip_{end}_{ch}": "float" for ch in CHANNELS for end in ("low", "high")},
}
DTYPE_CHECKS = {
    "str": pd.api.types.is_string_dtype,
    "int": pd.api.types.is_integer_dtype,
    "float": pd.api.types.is_float_dtype,
}


def disks(size: int, centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    """Boolean image with a disk at each centre."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


def grid_centres(n_side: int, spacing: int, offset: int) -> list[tuple[int, int]]:
    return [
        (offset + i * spacing, offset + j * spacing) for i in range(n_side) for j in range(n_side)
    ]


def write_plate(
    folder: Path, sites: dict[tuple[str, str], np.ndarray], illum: np.ndarray | None = None
) -> Path:
    """Per-channel TIFFs of (C, H, W) site arrays (in CHANNELS order) plus load_data.csv;
    with ``illum``, also JUMP-style per-channel illum .npy files and their columns."""
    (folder / "raw").mkdir(parents=True)
    rows = []
    for (well, site), image in sites.items():
        row = {"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Site": site}
        for ch in FILE_ORDER:
            name = f"{well}_{site}_{ch}.tiff"
            tifffile.imwrite(folder / "raw" / name, image[CHANNELS.index(ch)])
            row |= {f"FileName_Orig{ch}": name, f"PathName_Orig{ch}": "raw"}
            if illum is not None:
                np.save(folder / f"P1_Illum{ch}.npy", illum[CHANNELS.index(ch)])
                row |= {f"FileName_Illum{ch}": f"P1_Illum{ch}.npy", f"PathName_Illum{ch}": ""}
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "load_data.csv", index=False)
    return folder / "load_data.csv"


def random_plate(n_sites: int = 3, size: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        ("A01", str(s)): rng.integers(0, 4000, (5, size, size), dtype=np.uint16)
        for s in range(1, n_sites + 1)
    }


def run(
    tmp_path: Path,
    load_data: Path,
    illum_file: Path | None = None,
    channels: tuple[str, ...] = CHANNELS,
    threads: int = 1,
    **cfg: object,
) -> tuple[Path, Path]:
    manifest = tmp_path / "out" / "P1" / "manifest.parquet"
    sites = tmp_path / "out" / "P1" / "sites"
    config = PreprocessConfig(**cfg)
    preprocess_plate(load_data, "S1", "B1", manifest, sites, config, channels, illum_file, threads)
    return manifest, sites


def test_manifest_schema_and_merged_tiffs(tmp_path: Path) -> None:
    plate = random_plate(n_sites=3)
    manifest_path, sites = run(tmp_path, write_plate(tmp_path / "in", plate), threads=2)
    manifest = pd.read_parquet(manifest_path)
    assert list(manifest.columns) == list(MANIFEST_DTYPES)
    for column, kind in MANIFEST_DTYPES.items():
        assert DTYPE_CHECKS[kind](manifest[column].dtype), (column, manifest[column].dtype)
    assert len(manifest) == 3
    assert manifest["path"].tolist() == ["sites/A01_1.tiff", "sites/A01_2.tiff", "sites/A01_3.tiff"]
    assert (manifest["channels"] == "DNA,ER,RNA,AGP,Mito").all()
    assert (manifest["Metadata_Source"] == "S1").all()
    assert (manifest[["height", "width"]] == 32).all().all()
    assert not manifest.isna().any().any()
    assert sorted(p.name for p in sites.iterdir()) == ["A01_1.tiff", "A01_2.tiff", "A01_3.tiff"]
    merged = read_site_tiff(manifest_path.parent / manifest.at[1, "path"])
    assert merged.shape == (5, 32, 32)
    assert merged.dtype == np.uint16
    for k, ch in enumerate(CHANNELS):  # planes stored in CHANNELS order, whatever the CSV order
        raw = np.stack([image[k] for image in plate.values()])
        low, high = np.percentile(raw, [0.01, 99.9])
        assert manifest.at[0, f"clip_low_{ch}"] == pytest.approx(low)
        assert manifest.at[0, f"clip_high_{ch}"] == pytest.approx(high)
        expected = np.rint(
            (np.clip(plate[("A01", "2")][k], low, high) - low) / (high - low) * 65535
        )
        np.testing.assert_allclose(merged[k], expected, atol=1)
        assert manifest.at[1, f"mean_{ch}"] == pytest.approx(merged[k].mean() / 65535)


def test_clipping_saturates_at_both_ends(tmp_path: Path) -> None:
    image = np.tile(np.arange(1000, 2000, dtype=np.uint16), (5, 10, 1))  # 10 x 1000 per channel
    load_data = write_plate(tmp_path / "in", {("B02", "1"): image})
    manifest_path, _ = run(tmp_path, load_data, clip_percentiles=(10.0, 90.0))
    manifest = pd.read_parquet(manifest_path)
    assert manifest.at[0, "clip_low_DNA"] == pytest.approx(np.percentile(image[0], 10))
    merged = read_site_tiff(manifest_path.parent / manifest.at[0, "path"])
    assert (merged[:, :, :100] == 0).all()
    assert (merged[:, :, 900:] == 65535).all()
    expected = (np.arange(1000, 2000) - 1099.9) / (1899.1 - 1099.9) * 65535
    np.testing.assert_allclose(merged[0, 0, 100:900], np.rint(expected[100:900]), atol=1)


@pytest.mark.parametrize("from_load_data", [False, True])
def test_illumination_flattens_the_plate(tmp_path: Path, from_load_data: bool) -> None:
    field = np.linspace(1.0, 2.0, 32, dtype=np.float32)[None, None, :].repeat(32, 1).repeat(5, 0)
    flat = np.full((5, 32, 32), 1000.0)
    flat[:, 10:20, 10:20] = 3000.0  # a "cell", so the scaled range is not degenerate
    plate = {("A01", "1"): (flat * field).astype(np.uint16)}
    if from_load_data:  # JUMP's own per-channel illum files named in load_data
        load_data = write_plate(tmp_path / "in", plate, illum=field)
        manifest_path, _ = run(tmp_path, load_data, illum="load_data")
    else:
        load_data = write_plate(tmp_path / "in", plate)
        np.save(tmp_path / "illum.npy", field)
        manifest_path, _ = run(tmp_path, load_data, tmp_path / "illum.npy", illum="compute")
    manifest = pd.read_parquet(manifest_path)
    merged = read_site_tiff(manifest_path.parent / manifest.at[0, "path"])
    background = merged[0][flat[0] == 1000.0]
    assert np.ptp(background) <= 0.01 * 65535  # flat after correction (was a 2x ramp)


def test_dna_otsu_and_foreground_fraction() -> None:
    mask = disks(100, grid_centres(3, 30, 20), radius=8)
    dna = np.where(mask, 0.8, 0.1)
    threshold = dna_otsu(dna)
    assert 0.1 <= threshold < 0.8
    assert (dna > threshold).mean() == pytest.approx(mask.mean())
    assert dna_otsu(np.zeros((5, 5))) == 0.0


def test_count_nuclei_on_separated_and_touching_disks() -> None:
    separated = disks(256, grid_centres(6, 40, 20), radius=10)  # 36 nuclei
    noise = np.random.default_rng(0).normal(0, 0.03, separated.shape)
    dna = np.clip(np.where(separated, 0.7, 0.1) + noise, 0, 1)
    assert abs(count_nuclei(dna, dna_otsu(dna)) - 36) <= 3.6
    pairs = disks(128, [(30, 30), (30, 48), (90, 40), (90, 58)], radius=10)  # 2 touching pairs
    assert count_nuclei(pairs.astype(float), 0.5) == 4
    speck = disks(64, [(30, 30)], radius=2)
    assert count_nuclei(speck.astype(float), 0.5) == 0  # below the minimum nucleus area


def test_corrupt_tiff_is_named_and_nothing_is_left_behind(tmp_path: Path) -> None:
    load_data = write_plate(tmp_path / "in", random_plate(n_sites=3))
    bad = tmp_path / "in" / "raw" / "A01_2_ER.tiff"
    bad.write_bytes(bad.read_bytes()[:500])  # truncated
    with pytest.raises(InputError, match=r"A01_2_ER\.tiff: cannot read image"):
        run(tmp_path, load_data)
    assert not (tmp_path / "out" / "P1" / "manifest.parquet").exists()
    assert not (tmp_path / "out" / "P1" / "sites").exists()


def test_mis_shaped_site_is_an_error(tmp_path: Path) -> None:
    plate = random_plate(n_sites=2)
    plate[("A02", "1")] = np.ones((5, 40, 40), np.uint16)
    with pytest.raises(InputError, match=r"A02_1_DNA\.tiff .*shape \(40, 40\) differs"):
        run(tmp_path, write_plate(tmp_path / "in", plate))
    assert not (tmp_path / "out" / "P1" / "sites").exists()


def test_channels_without_dna_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must include DNA"):
        run(tmp_path, tmp_path / "load_data.csv", channels=("ER", "RNA"))
