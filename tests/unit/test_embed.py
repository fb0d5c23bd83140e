"""Tiling, empty-tile drop, sharding, tile -> site -> well aggregation, and a killed writer."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from paintssl.embed.shard import embed_plate, embed_shard
from paintssl.embed.tiles import EmbedConfig, shard_rows, site_tiles, tile_origins
from paintssl.embed.wells import aggregate_wells, gather_embeddings
from paintssl.pretrain.backbones import create_backbone, export_weights, load_exported

CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def test_tile_origins_drop_partial_edge_tiles() -> None:
    assert tile_origins(100, 70, 32, 32) == [(y, x) for y in (0, 32, 64) for x in (0, 32)]
    assert len(tile_origins(64, 64, 32, 16)) == 9
    with pytest.raises(ValueError, match="smaller than"):
        tile_origins(20, 64, 32, 32)


def test_site_tiles_keeps_cell_tiles_or_the_central_one() -> None:
    image = np.zeros((5, 64, 64), dtype=np.float32)
    image[0, 40:50, 40:50] = 1.0  # a nucleus in the bottom-right tile only
    tiles = site_tiles(image, dna_index=0, otsu=0.5, tile=32, stride=32)
    assert tiles.shape == (1, 5, 32, 32)
    assert tiles[0, 0].sum() == 100
    empty = site_tiles(np.zeros_like(image), dna_index=0, otsu=0.5, tile=32, stride=32)
    assert empty.shape == (1, 5, 32, 32)


def test_shard_rows_partition_sites() -> None:
    sites = pd.DataFrame(
        {
            "Metadata_Source": "s",
            "Metadata_Batch": "b",
            "Metadata_Plate": "p",
            "Metadata_Well": [f"A{i:02d}" for i in range(10)],
            "Metadata_Site": "1",
        }
    )
    parts = [shard_rows(sites, i, 3) for i in range(3)]
    assert sum(map(len, parts)) == 10
    assert set(pd.concat(parts)["Metadata_Well"]) == set(sites["Metadata_Well"])
    with pytest.raises(ValueError, match="outside"):
        shard_rows(sites, 3, 3)


def site_table(n_tiles: list[int], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Metadata_Source": "s",
            "Metadata_Batch": "b",
            "Metadata_Plate": "p",
            "Metadata_Well": "A01",
            "Metadata_Site": [str(i) for i in range(len(values))],
            "Metadata_cell_count": 5,
            "Metadata_n_tiles": n_tiles,
            "emb_0000": values,
        }
    )


def test_two_stage_and_flat_well_means_differ_as_defined() -> None:
    sites = site_table(n_tiles=[1, 3], values=[0.0, 4.0])
    two_stage = aggregate_wells(sites, "two_stage")
    flat = aggregate_wells(sites, "flat")
    assert two_stage["emb_0000"].item() == pytest.approx(2.0)
    assert flat["emb_0000"].item() == pytest.approx(3.0)
    assert two_stage[["Metadata_n_sites", "Metadata_n_tiles", "Metadata_cell_count"]].iloc[
        0
    ].tolist() == [2, 4, 10]
    with pytest.raises(ValueError, match="unknown well aggregation"):
        aggregate_wells(sites, "median")


@pytest.fixture
def tiny_plate(tmp_path: Path) -> Path:
    """A manifest with 3 sites of 64x64 px and merged uint16 TIFFs."""
    rng = np.random.default_rng(0)
    (tmp_path / "sites").mkdir()
    rows = []
    for i in range(3):
        image = (rng.random((5, 64, 64)) * 65535).astype(np.uint16)
        tifffile.imwrite(tmp_path / f"sites/A0{i}_1.tiff", image)
        rows.append(
            {
                "Metadata_Source": "s",
                "Metadata_Batch": "b",
                "Metadata_Plate": "p",
                "Metadata_Well": f"A0{i}",
                "Metadata_Site": "1",
                "path": f"sites/A0{i}_1.tiff",
                "channels": ",".join(CHANNELS),
                "height": 64,
                "width": 64,
                "dna_otsu": 0.5,
                "cell_count": 3,
            }
        )
    pd.DataFrame(rows).to_parquet(tmp_path / "manifest.parquet")
    return tmp_path


def tiny_weights(path: Path, channels: list[str]) -> Path:
    torch.manual_seed(0)
    net = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8)
    export_weights(path, net, "vit_tiny_patch16_224", 32, channels, [0.5] * 5, [0.25] * 5,
                   {"patch_size": 8})  # fmt: skip
    return path


def test_embed_shards_then_gather_wells(tiny_plate: Path) -> None:
    weights = tiny_weights(tiny_plate / "weights.pt", CHANNELS)
    shards = [tiny_plate / f"shard-{i}.parquet" for i in range(2)]
    for i, out in enumerate(shards):
        embed_shard(tiny_plate / "manifest.parquet", weights, out, i, EmbedConfig(n_shards=2))
    gather_embeddings(shards, tiny_plate / "plate.parquet")
    wells = pd.read_parquet(tiny_plate / "plate.parquet")
    assert len(wells) == 3
    assert wells["Metadata_n_tiles"].tolist() == [4, 4, 4]  # 64 px site -> 2x2 tiles of 32
    emb = wells.filter(like="emb_")
    assert emb.shape[1] == 192  # ViT-Tiny width
    assert np.isfinite(emb.to_numpy()).all()
    assert emb.std(axis=0).mean() > 0  # different sites -> different embeddings


def test_bf16_embedding_is_an_option_close_to_the_fp32_default(tiny_plate: Path) -> None:
    weights = tiny_weights(tiny_plate / "weights.pt", CHANNELS)
    assert EmbedConfig().precision == "fp32"
    tables = {}
    for precision in ("fp32", "bf16"):
        out = tiny_plate / f"{precision}.parquet"
        embed_shard(
            tiny_plate / "manifest.parquet", weights, out, 0, EmbedConfig(precision=precision)
        )
        tables[precision] = pd.read_parquet(out).filter(like="emb_").to_numpy()
    difference = np.abs(tables["bf16"] - tables["fp32"]).max()
    scale = np.abs(tables["fp32"]).max()
    assert 0 < difference < 0.05 * scale  # bf16 keeps 8 bits of mantissa: not equal, close


def test_embedding_refuses_other_channel_names(tiny_plate: Path) -> None:
    weights = tiny_weights(tiny_plate / "w.pt", ["DNA", "RNA", "ER", "AGP", "Mito"])
    with pytest.raises(ValueError, match="trained on 'DNA,RNA,ER,AGP,Mito'"):
        embed_shard(
            tiny_plate / "manifest.parquet", weights, tiny_plate / "o.parquet", 0, EmbedConfig()
        )


def test_exported_weights_round_trip_with_weights_only(tmp_path: Path) -> None:
    path = tiny_weights(tmp_path / "weights.pt", CHANNELS)
    loaded = load_exported(path)
    assert loaded.channels == tuple(CHANNELS)
    assert loaded.img_size == 32
    assert all(isinstance(v, float) for v in loaded.mean)


def test_corrupt_weights_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"weights\.pt"):
        load_exported(bad)


KILLED_WRITER = """
import sys, time
import pandas as pd
from paintssl.embed.shard import embed_plate
from paintssl.embed.tiles import EmbedConfig

def half_then_hang(self, path, **kwargs):  # the writer is killed half-way through the file
    with open(path, "wb") as handle:
        handle.write(b"PAR1 partial")
        handle.flush()
        time.sleep(60)

pd.DataFrame.to_parquet = half_then_hang
embed_plate(sys.argv[1], sys.argv[2], sys.argv[3], EmbedConfig())
"""


def test_killed_embedding_leaves_no_output_and_a_rerun_equals_an_uninterrupted_run(
    tiny_plate: Path,
) -> None:
    weights = tiny_weights(tiny_plate / "weights.pt", CHANNELS)
    manifest, out = tiny_plate / "manifest.parquet", tiny_plate / "plate.parquet"
    args = [sys.executable, "-c", KILLED_WRITER, str(manifest), str(weights), str(out)]
    child = subprocess.Popen(args)
    partial = out.with_name(out.name + ".tmp")
    deadline = time.monotonic() + 120
    while not (partial.exists() or out.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert partial.exists(), "the writer never started"
    assert not out.exists()  # Snakemake cannot take the job as finished
    embed_plate(manifest, weights, out, EmbedConfig())  # the rerun
    assert not partial.exists()
    uninterrupted = tiny_plate / "uninterrupted.parquet"
    embed_plate(manifest, weights, uninterrupted, EmbedConfig())
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(uninterrupted))
    assert len(pd.read_parquet(out)) == 3
