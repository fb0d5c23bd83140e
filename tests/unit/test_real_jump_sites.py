"""Preprocessing and embedding of two real JUMP cpg0016 sites (jump-rab30-mini, 384x384 crops).

The zarr stores channels alphabetically (AGP, DNA, ER, Mito, RNA); each chunk file is gzip
of 384*384 little-endian uint16, so no zarr library is needed.
"""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from paintssl.embed.shard import embed_shard
from paintssl.embed.tiles import EmbedConfig
from paintssl.embed.wells import gather_embeddings
from paintssl.preprocess.codec import read_site_tiff
from paintssl.preprocess.plate import PreprocessConfig, preprocess_plate
from paintssl.pretrain.backbones import create_backbone, export_weights
from paintssl.tables import CHANNELS
from tests.paths import SHARED_DATA, require_shared

DATA = SHARED_DATA / "jump-rab30-mini"
ZARR_CHANNELS = ("AGP", "DNA", "ER", "Mito", "RNA")
SITES = {  # zarr site index -> (source, batch, plate, well, site, plausible cell count)
    0: ("source_4", "2021_06_07_Batch5", "BR00123947", "G01", "1", (8, 25)),
    1: ("source_13", "20220914_Run1", "CP-CC9-R1-05", "L07", "0", (40, 90)),
}


@pytest.fixture(scope="module", autouse=True)
def real_sites() -> None:
    require_shared(DATA / "images.zarr")


def read_chunk(site: int, channel: int) -> np.ndarray:
    raw = gzip.decompress((DATA / f"images.zarr/images/c/{site}/{channel}/0/0").read_bytes())
    return np.frombuffer(raw, "<u2").reshape(384, 384)


def write_jump_plate(folder: Path, site: int) -> Path:
    """Per-channel TIFFs with JUMP-like names and a load_data.csv in the zarr's channel order."""
    _, _, plate, well, site_id, _ = SITES[site]
    folder.mkdir(parents=True)
    row = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site_id}
    for k, ch in enumerate(ZARR_CHANNELS):
        name = f"r01c01f0{site_id}p01-ch{k + 1}sk1fk1fl1.tiff"
        tifffile.imwrite(folder / name, read_chunk(site, k))
        row |= {f"FileName_Orig{ch}": name, f"PathName_Orig{ch}": str(folder)}
    pd.DataFrame([row]).to_csv(folder / "load_data.csv", index=False)
    return folder / "load_data.csv"


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> dict[int, pd.DataFrame]:
    root = tmp_path_factory.mktemp("jump")
    out = {}
    for site, (source, batch, plate, *_) in SITES.items():
        load_data = write_jump_plate(root / "raw" / plate, site)
        manifest = root / "images" / plate / "manifest.parquet"
        preprocess_plate(
            load_data, source, batch, manifest, manifest.parent / "sites", PreprocessConfig()
        )
        out[site] = pd.read_parquet(manifest).assign(root=str(manifest.parent))
    return out


def merged_image(manifest: pd.DataFrame) -> np.ndarray:
    return read_site_tiff(Path(manifest.at[0, "root"]) / manifest.at[0, "path"])


def scaled_input(site: int, channel: str) -> np.ndarray:
    """The expected merged plane: raw clipped at its 0.01/99.9 percentiles, in uint16 units."""
    raw = read_chunk(site, ZARR_CHANNELS.index(channel)).astype(np.float64)
    low, high = np.percentile(raw, [0.01, 99.9])
    return np.rint((np.clip(raw, low, high) - low) / (high - low) * 65535)


@pytest.mark.parametrize("site", sorted(SITES))
def test_merged_tiff_maps_channels_by_name(manifests: dict, site: int) -> None:
    merged = merged_image(manifests[site])
    assert merged.shape == (5, 384, 384)
    expected = {ch: scaled_input(site, ch) for ch in CHANNELS}
    for k, ch in enumerate(CHANNELS):
        assert np.abs(merged[k] - expected[ch]).max() <= 1, ch
        for other in CHANNELS:  # the check can tell channels apart
            if other != ch:
                assert np.abs(merged[k] - expected[other]).mean() > 100, (ch, other)


@pytest.mark.parametrize("site", sorted(SITES))
def test_otsu_finds_a_plausible_number_of_nuclei(manifests: dict, site: int) -> None:
    row = manifests[site].iloc[0]
    low, high = SITES[site][-1]
    assert low <= row["cell_count"] <= high
    assert 0.05 < row["dna_otsu"] < 0.8
    assert 0.02 < row["foreground_fraction"] < 0.5


def test_both_sources_fill_the_unit_range_despite_10x_raw_gap(manifests: dict) -> None:
    highs = [manifests[site].at[0, "clip_high_DNA"] for site in SITES]
    assert highs[0] / highs[1] > 10  # raw DNA intensities ~10x apart between the microscopes
    for site in SITES:
        merged = merged_image(manifests[site])
        assert (merged.min(axis=(1, 2)) == 0).all()
        assert (merged.max(axis=(1, 2)) == 65535).all()
        for ch in CHANNELS:
            assert 0.02 < manifests[site].at[0, f"mean_{ch}"] < 0.5


def test_real_sites_embed_with_a_5_channel_vit(manifests: dict, tmp_path: Path) -> None:
    """ViT-S/16 with random weights: one 224 px tile per 384 px site, one well row per plate."""
    torch.manual_seed(0)
    net = create_backbone("vit_small_patch16_224", img_size=224)
    weights = tmp_path / "weights.pt"
    export_weights(weights, net, "vit_small_patch16_224", 224, CHANNELS, [0.1] * 5, [0.1] * 5)
    wells = []
    for site, manifest in manifests.items():
        plate = SITES[site][2]
        shard = tmp_path / f"{plate}-shard.parquet"
        embed_shard(
            Path(manifest.at[0, "root"]) / "manifest.parquet", weights, shard, 0, EmbedConfig()
        )
        gather_embeddings([shard], tmp_path / f"{plate}.parquet")
        wells.append(pd.read_parquet(tmp_path / f"{plate}.parquet"))
    table = pd.concat(wells, ignore_index=True)
    assert table["Metadata_Plate"].tolist() == [SITES[s][2] for s in SITES]
    assert table["Metadata_n_tiles"].tolist() == [1, 1]
    features = table.filter(like="emb_").to_numpy()
    assert features.shape == (2, 384)
    assert np.isfinite(features).all()
    assert not np.allclose(features[0], features[1])
