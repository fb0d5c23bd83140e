"""Embedding maths against direct computations on a tiny plate run through the real stages.

Two plates are preprocessed with ``preprocess_plate`` and a random two-block ViT-Tiny is
exported with ``pretrain`` (method ``random``), as the workflow does. The tests then
recompute, outside the package's code paths, what the embed stage and the exported channel
statistics must be.

Tolerances: the package and the references both run in float32 but batch tiles
differently (so BLAS sums in another order) and the well table is stored as float32;
that moves embeddings of size <= 3 by <= 2e-7, hence ``rtol=1e-5, atol=1e-6``. A wrong
tile, site, normalisation or aggregation moves them by O(0.1) (flat vs two-stage: 0.8).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from paintssl.embed.shard import embed_plate, embed_shard
from paintssl.embed.tiles import EmbedConfig, site_tiles
from paintssl.embed.wells import gather_embeddings
from paintssl.preprocess.codec import read_scaled_site
from paintssl.preprocess.plate import PreprocessConfig, preprocess_plate
from paintssl.pretrain.backbones import load_exported
from paintssl.pretrain.config import ModelConfig
from paintssl.pretrain.run import pretrain
from paintssl.tables import CHANNELS, SITE_KEYS, WELL_KEYS

TILE = 32
RTOL, ATOL = 1e-5, 1e-6
# Plate P1: 4 wells x 2 sites of 64 px (a 2 x 2 grid of tiles); each entry lists the tiles
# (row-major) that hold a nucleus, so it is also the number of tiles the cell rule keeps.
P1_TILES = {
    ("A01", "1"): [0],
    ("A01", "2"): [0, 1, 2, 3],
    ("A02", "1"): [1, 2],
    ("A02", "2"): [3],
    ("A03", "1"): [0, 3],
    ("A03", "2"): [1, 2, 3],
    ("A04", "1"): [2],
    ("A04", "2"): [0, 1],
}
# Plate P2 (training only): 3 sites of 96 px with more nuclei, so pooling must weight by pixels.
P2_TILES = {("B01", "1"): list(range(9)), ("B01", "2"): [0, 4, 8], ("B02", "1"): [1, 2, 5, 7]}


def raw_site(rng: np.random.Generator, size: int, tiles: list[int]) -> np.ndarray:
    """A (C, size, size) uint16 site: textured channels with a per-site gain, DNA nuclei."""
    gain = rng.uniform(0.5, 1.5)
    image = rng.integers(200, 1200, (len(CHANNELS), size, size)) * gain
    yy, xx = np.mgrid[0:size, 0:size]
    per_row = size // TILE
    for t in tiles:  # a nucleus: a radial ramp of radius 7 px inside tile t
        cy, cx = TILE * np.array([t // per_row, t % per_row]) + 16 + rng.integers(-3, 4, 2)
        ramp = 1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / 49
        image[CHANNELS.index("DNA")] += 20000 * np.clip(ramp, 0, None)
    return image.astype(np.uint16)


def preprocessed_plate(root: Path, plate: str, size: int, layout: dict, seed: int) -> Path:
    """Per-channel raw TIFFs + load_data.csv, run through ``preprocess_plate``; the manifest."""
    rng = np.random.default_rng(seed)
    (root / "raw").mkdir(parents=True)
    rows = []
    for (well, site), tiles in layout.items():
        row = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site}
        for ch, plane in zip(CHANNELS, raw_site(rng, size, tiles), strict=True):
            tifffile.imwrite(root / "raw" / f"{well}_{site}_{ch}.tiff", plane)
            row |= {f"FileName_Orig{ch}": f"{well}_{site}_{ch}.tiff", f"PathName_Orig{ch}": "raw"}
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "load_data.csv", index=False)
    manifest = root / "out" / "manifest.parquet"
    preprocess_plate(root / "load_data.csv", "S1", "B1", manifest, root / "out" / "sites",
                     PreprocessConfig())  # fmt: skip
    return manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Manifests of P1 and P2 and the ``weights.pt`` that ``pretrain`` exports from both."""
    root = tmp_path_factory.mktemp("maths")
    paths = {
        "P1": preprocessed_plate(root / "P1", "P1", 64, P1_TILES, seed=1),
        "P2": preprocessed_plate(root / "P2", "P2", 96, P2_TILES, seed=2),
    }
    model = ModelConfig("random", "vit_tiny_patch16_224", TILE, {"patch_size": 8, "depth": 2})
    pretrain([paths["P1"], paths["P2"]], root / "weights.pt", model, seed=3)
    return paths | {"weights": root / "weights.pt", "root": root}


def sharded_wells(trained: dict[str, Path], cfg: EmbedConfig, name: str) -> pd.DataFrame:
    """Run every shard of P1 and the gather step; the well table sorted by well."""
    shards = [trained["root"] / f"{name}-{i}.parquet" for i in range(cfg.n_shards)]
    for i, out in enumerate(shards):
        embed_shard(trained["P1"], trained["weights"], out, i, cfg)
    gather_embeddings(shards, trained["root"] / f"{name}.parquet", cfg.well_aggregation)
    return pd.read_parquet(trained["root"] / f"{name}.parquet").sort_values(list(WELL_KEYS))


def direct_site_embeddings(manifest: Path, weights: Path) -> pd.DataFrame:
    """Read, tile, normalise (stats of weights.pt) and embed each site; mean over its tiles."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    mean = np.asarray(state["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(state["std"], dtype=np.float32)[:, None, None]
    net = load_exported(weights).model.float().eval()
    dna, size = state["channels"].index("DNA"), state["img_size"]
    sites = pd.read_parquet(manifest)
    vectors, n_tiles = [], []
    for row in sites.itertuples():
        image = read_scaled_site(manifest.parent / row.path)
        tiles = site_tiles(image, dna, float(row.dna_otsu), size, size)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray((tiles - mean) / std))
            features = net.forward_head(net.forward_features(x), pre_logits=True)
        vectors.append(features.double().mean(dim=0).numpy())
        n_tiles.append(len(tiles))
    return sites[list(SITE_KEYS)].assign(n_tiles=n_tiles, vector=vectors)


@pytest.fixture(scope="module")
def direct_sites(trained: dict[str, Path]) -> pd.DataFrame:
    """:func:`direct_site_embeddings` of P1, whose tile counts are the planted ones."""
    sites = direct_site_embeddings(trained["P1"], trained["weights"])
    keys = zip(sites["Metadata_Well"], sites["Metadata_Site"], strict=True)
    assert sites["n_tiles"].tolist() == [len(P1_TILES[key]) for key in keys]  # the cell rule
    return sites


def direct_wells(sites: pd.DataFrame, method: str) -> np.ndarray:
    """Two-stage: mean of site means; flat: mean of all tiles (tile-count weighted)."""
    wells = []
    for _, well in sites.groupby(list(WELL_KEYS), sort=True):
        weights = well["n_tiles"].to_numpy(float) if method == "flat" else np.ones(len(well))
        wells.append(np.average(np.stack(well["vector"]), axis=0, weights=weights))
    return np.stack(wells)


@pytest.mark.parametrize("method", ["two_stage", "flat"])
def test_well_embeddings_equal_a_direct_forward_pass(
    trained: dict, direct_sites: pd.DataFrame, method: str
) -> None:
    cfg = EmbedConfig(batch_size=3, well_aggregation=method)  # batches straddle sites
    wells = sharded_wells(trained, cfg, f"wells-{method}")
    expected_tiles = direct_sites.groupby("Metadata_Well")["n_tiles"].sum().tolist()
    assert wells["Metadata_n_tiles"].tolist() == expected_tiles
    assert wells["Metadata_n_sites"].tolist() == [2, 2, 2, 2]
    got = wells.filter(like="emb_").to_numpy()
    assert got.shape == (4, 192)
    np.testing.assert_allclose(got, direct_wells(direct_sites, method), rtol=RTOL, atol=ATOL)


def test_sharded_embedding_equals_unsharded_and_the_one_job_path(trained: dict) -> None:
    whole = sharded_wells(trained, EmbedConfig(n_shards=1), "one").reset_index(drop=True)
    split = sharded_wells(trained, EmbedConfig(n_shards=3), "three").reset_index(drop=True)
    embed_plate(trained["P1"], trained["weights"], trained["root"] / "plate.parquet", EmbedConfig())
    one_job = pd.read_parquet(trained["root"] / "plate.parquet").sort_values(list(WELL_KEYS))
    pd.testing.assert_frame_equal(one_job.reset_index(drop=True), whole)  # the same maths
    shards = [pd.read_parquet(trained["root"] / f"three-{i}.parquet") for i in range(3)]
    spans = [set(shard["Metadata_Well"]) for shard in shards]
    assert spans == [{"A01", "A02"}, {"A02", "A03"}, {"A03", "A04"}]  # wells cut by shards
    pd.testing.assert_frame_equal(split, whole, check_exact=False, rtol=RTOL, atol=ATOL)


def test_channel_stats_in_weights_equal_pixel_statistics(trained: dict) -> None:
    """Pooled over every pixel of every training site (population std), read from the TIFFs.

    The package pools per-site means/stds of float32-scaled pixels in float64: it agrees
    to ~2e-9 here. A sample std (ddof=1) would be off by 8e-6, weighting sites equally by
    4e-2 and averaging site stds by 0.3, so rtol 1e-6 tells them apart.
    """
    planes = [[] for _ in CHANNELS]
    for plate in ("P1", "P2"):
        manifest = pd.read_parquet(trained[plate])
        for path in manifest["path"]:
            image = tifffile.imread(trained[plate].parent / path).astype(np.float64) / 65535
            for k, plane in enumerate(image):
                planes[k].append(plane.ravel())
    pixels = [np.concatenate(p) for p in planes]
    state = torch.load(trained["weights"], map_location="cpu", weights_only=True)
    assert state["channels"] == list(CHANNELS)
    np.testing.assert_allclose(state["mean"], [p.mean() for p in pixels], rtol=1e-6)
    np.testing.assert_allclose(state["std"], [p.std() for p in pixels], rtol=1e-6)
