"""Tiling, empty-tile drop, sharding, tile -> site -> well aggregation, and a killed writer;
tile features: token summaries of chosen blocks, flip averaging, overlapping tiles."""

import dataclasses
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

from paintssl.embed.features import absolute_blocks, tile_features, token_summaries
from paintssl.embed.shard import SiteTiles, embed_plate, embed_shard, site_embeddings
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


def tiny_weights(path: Path, channels: list[str], pooling: dict | None = None) -> Path:
    """A random ViT-Tiny of 32 px tiles; ``pooling`` e.g. MAE's ``global_pool``, ``fc_norm``."""
    torch.manual_seed(0)
    kwargs = {"patch_size": 8, **(pooling or {})}
    net = create_backbone("vit_tiny_patch16_224", img_size=32, **kwargs)
    export_weights(path, net, "vit_tiny_patch16_224", 32, channels, [0.5] * 5, [0.25] * 5,
                   kwargs)  # fmt: skip
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


MAE_POOLING = {"global_pool": "avg", "fc_norm": False}  # MAE's exported backbone


def previous_site_features(manifest: Path, weights: Path) -> np.ndarray:
    """The embed stage before ``embed.tokens/blocks/flips``: ``net(tiles)`` meaned per site."""
    model = load_exported(weights)
    sites = SiteTiles(pd.read_parquet(manifest), manifest.parent, model, model.img_size)
    tiles = [sites[i] for i in range(len(sites))]
    with torch.inference_mode():
        features = model.model(torch.cat(tiles)).float()
    chunks = torch.split(features, [len(t) for t in tiles])
    return np.stack([chunk.mean(dim=0).numpy() for chunk in chunks]).astype(np.float32)


@pytest.mark.parametrize("pooling", [None, MAE_POOLING], ids=["class_token", "mean_patch"])
def test_default_features_are_bitwise_the_previous_forward_pass(
    tiny_plate: Path, pooling: dict | None
) -> None:
    weights = tiny_weights(tiny_plate / "weights.pt", CHANNELS, pooling)
    manifest = tiny_plate / "manifest.parquet"
    sites = site_embeddings(manifest, weights, 0, EmbedConfig())
    np.testing.assert_array_equal(
        sites.filter(like="emb_").to_numpy(), previous_site_features(manifest, weights)
    )


def tiny_net(depth: int = 3, **pooling: object) -> torch.nn.Module:
    """A random ViT-Tiny of 32 px tiles (16 patches of 8 px), 192 wide, in eval mode."""
    torch.manual_seed(0)
    return create_backbone("vit_tiny_patch16_224", 32, patch_size=8, depth=depth, **pooling).eval()


@torch.inference_mode()
def test_multi_granularity_is_the_parts_of_direct_forward_passes() -> None:
    """Every part is the same float ops as the direct pass it is compared with: exact."""
    net, tiles = tiny_net(), torch.randn(6, 5, 32, 32, generator=torch.Generator().manual_seed(1))
    got = token_summaries(net, tiles, ["cls", "mean_patch", "pooled"], [-1, 1])
    assert got.shape == (6, 2 * 3 * 192)  # blocks x tokens x width
    last, block1 = got[:, : 3 * 192], got[:, 3 * 192 :]
    final = net.forward_features(tiles)
    parts = {"cls": final[:, 0], "mean_patch": final[:, 1:].mean(dim=1), "pooled": net(tiles)}
    for i, expected in enumerate(parts.values()):
        assert torch.equal(last[:, i * 192 : (i + 1) * 192], expected)
    [(patches, prefix)] = net.forward_intermediates(
        tiles, indices=[1], norm=True, output_fmt="NLC", intermediates_only=True,
        return_prefix_tokens=True,
    )  # fmt: skip
    assert torch.equal(block1[:, :192], prefix[:, 0])
    assert torch.equal(block1[:, 192:384], patches.mean(dim=1))
    assert not torch.equal(block1[:, :192], last[:, :192])  # another block, other tokens
    mae = tiny_net(**MAE_POOLING)
    assert torch.equal(token_summaries(mae, tiles, ["mean_patch"], [-1]), mae(tiles))


def test_multi_granularity_site_features_widen_and_keep_the_default_part(
    tiny_plate: Path,
) -> None:
    weights = tiny_weights(tiny_plate / "weights.pt", CHANNELS)
    manifest = tiny_plate / "manifest.parquet"
    default = site_embeddings(manifest, weights, 0, EmbedConfig()).filter(like="emb_")
    cfg = EmbedConfig(tokens=["cls", "mean_patch"], blocks=[-1, -3])
    wide = site_embeddings(manifest, weights, 0, cfg).filter(like="emb_")
    assert wide.shape == (3, 4 * 192)
    np.testing.assert_array_equal(wide.iloc[:, :192], default)  # CLS of the last block = pooled
    empty = site_embeddings(manifest, weights, 2, dataclasses.replace(cfg, n_shards=4))
    assert empty.empty  # 3 sites in 4 shards: shard 2 has none
    assert empty.filter(like="emb_").shape[1] == 4 * 192


@torch.inference_mode()
def test_flip_averaging_is_the_mean_of_direct_passes_of_flipped_tiles() -> None:
    """Flipped in numpy (h: columns reversed); float32 sum of 4 terms vs float64 mean.

    The 3 float32 additions round by at most u = 2^-24 of a partial sum each, and each
    partial sum is at most sum |f_i|, so |got - mean| <= 3 u sum |f_i| / 4.
    """
    net = tiny_net()
    tiles = np.random.default_rng(2).standard_normal((6, 5, 32, 32)).astype(np.float32)
    views = [tiles, tiles[..., ::-1], tiles[..., ::-1, :], tiles[..., ::-1, ::-1]]
    direct = np.stack([net(torch.from_numpy(v.copy())).double().numpy() for v in views])
    got = tile_features(net, torch.from_numpy(tiles), EmbedConfig(flips=["h", "v", "hv"]))
    bound = 3 * 2.0**-24 * np.abs(direct).sum(axis=0) / 4
    assert np.all(np.abs(got.double().numpy() - direct.mean(axis=0)) <= bound)
    assert np.abs(direct[0] - direct.mean(axis=0)).max() > 1e3 * bound.max()  # flips matter


@pytest.mark.parametrize(("height", "width", "stride"), [(64, 64, 16), (100, 70, 12), (64, 96, 32)])
def test_tile_count_follows_the_stride(height: int, width: int, stride: int) -> None:
    origins = tile_origins(height, width, 32, stride)
    per_side = [(side - 32) // stride + 1 for side in (height, width)]
    assert len(origins) == per_side[0] * per_side[1]
    assert origins[-1] == ((per_side[0] - 1) * stride, (per_side[1] - 1) * stride)


def test_overlapping_tiles_reach_the_sites_and_stride_tile_is_the_default(
    tiny_plate: Path,
) -> None:
    weights = tiny_weights(tiny_plate / "weights.pt", CHANNELS)
    manifest = tiny_plate / "manifest.parquet"
    default = site_embeddings(manifest, weights, 0, EmbedConfig())
    pd.testing.assert_frame_equal(site_embeddings(manifest, weights, 0, EmbedConfig(stride=32)),
                                  default)  # fmt: skip
    overlapping = site_embeddings(manifest, weights, 0, EmbedConfig(stride=16))
    assert default["Metadata_n_tiles"].tolist() == [4, 4, 4]  # 2 x 2 tiles of 32 px
    assert overlapping["Metadata_n_tiles"].tolist() == [9, 9, 9]  # 3 x 3 at stride 16


@pytest.mark.parametrize(
    "settings",
    [{"tokens": ["cls", "cls"]}, {"tokens": ["mean"]}, {"tokens": []}, {"flips": ["d"]},
     {"blocks": []}],
)  # fmt: skip
def test_embed_config_refuses_unknown_repeated_or_missing_entries(settings: dict) -> None:
    with pytest.raises(ValueError, match="embed"):
        EmbedConfig(**settings)


def test_blocks_outside_the_network_or_named_twice_are_refused() -> None:
    assert absolute_blocks([-1, 0, -3], 4) == [3, 0, 1]
    for blocks in ([4], [-5]):
        with pytest.raises(ValueError, match="has 4 blocks"):
            absolute_blocks(blocks, 4)
    with pytest.raises(ValueError, match="twice"):
        absolute_blocks([-1, 3], 4)


def test_cls_needs_a_class_token() -> None:
    net, tiles = tiny_net(class_token=False, global_pool="avg"), torch.zeros(1, 5, 32, 32)
    with pytest.raises(ValueError, match="no class token"):
        token_summaries(net, tiles, ["cls"], [-1])
