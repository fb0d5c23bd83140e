"""Model entries (ModelConfig) and the random_features model's well embeddings."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paintssl.embed.random_features import embed_random_features, random_well_features
from paintssl.embed.wells import aggregate_wells
from paintssl.pretrain.config import ModelConfig, builds_network, is_trained
from paintssl.tables import CELL_COUNT, N_TILES, WELL_KEYS, feature_columns

REPO = Path(__file__).resolve().parents[2]
VIT = {"backbone": "vit_tiny_patch16_224", "img_size": 32}


def manifest(plate: str = "P1", wells: int = 6, sites: int = 2) -> pd.DataFrame:
    """A manifest's key columns: ``wells`` x ``sites`` sites with cell counts (shuffled)."""
    rows = [
        {"Metadata_Source": "s1", "Metadata_Batch": "b1", "Metadata_Plate": plate,
         "Metadata_Well": f"A{w:02d}", "Metadata_Site": str(s), "cell_count": 10 * w + s}
        for w in range(1, wells + 1)
        for s in range(1, sites + 1)
    ]  # fmt: skip
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ({"method": "external"}, "needs `profiles`"),
        ({"method": "external", "profiles": "p.csv", **VIT}, "builds no network: remove backbone"),
        ({"method": "external", "profiles": "p.csv", "method_params": {"dim": 3}}, "no param"),
        ({"method": "random_features", **VIT}, "builds no network: remove backbone, img_size"),
        ({"method": "random_features", "train": {"steps": 3}}, "remove train"),
        ({"method": "random_features", "method_params": {"width": 3}}, "only method_params.dim"),
        ({"method": "random_features", "method_params": {"dim": 0}}, "positive integer"),
        ({"method": "random_features", "method_params": {"dim": True}}, "positive integer"),
        ({"method": "random_features", "profiles": "p.csv"}, "only by method 'external'"),
        ({"method": "dino", "profiles": "p.csv", **VIT}, "only by method 'external'"),
        ({"method": "dino", "img_size": 32}, "builds a network: set backbone"),
        ({"method": "random"}, "set backbone and img_size"),
        ({"method": "random", "train": {"steps": 3}, **VIT}, "trains nothing"),
        ({"method": "random_features", "profile_steps": "mad"}, "a list of step names"),
    ],
)
def test_model_config_refuses_settings_its_method_cannot_use(entry: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ModelConfig(**entry)


def test_model_config_accepts_networkless_methods_without_backbone() -> None:
    assert ModelConfig("random_features").random_features_dim == 384
    assert ModelConfig("random_features", method_params={"dim": 7}).random_features_dim == 7
    external = ModelConfig("external", profiles="p.parquet", profile_steps=["mad"])
    assert external.backbone is None
    assert [builds_network(m) for m in ("random", "dino", "random_features", "external")] == [
        True,
        True,
        False,
        False,
    ]
    assert [is_trained(m) for m in ("random", "dino", "random_features")] == [False, True, False]


def test_random_features_have_the_columns_of_ssl_well_embeddings() -> None:
    sites = manifest()
    wells = random_well_features(sites, dim=5, seed=0)
    shard = sites.rename(columns={"cell_count": CELL_COUNT}).assign(**{N_TILES: 3})
    ssl = aggregate_wells(shard.assign(**{f"emb_{i:04d}": float(i) for i in range(5)}))
    assert list(wells.columns) == list(ssl.columns)
    meta = [c for c in ssl.columns if c.startswith("Metadata_")]
    assert (wells.dtypes[meta] == ssl.dtypes[meta]).all()
    pd.testing.assert_frame_equal(
        wells[[*WELL_KEYS, "Metadata_n_sites", CELL_COUNT]],
        ssl[[*WELL_KEYS, "Metadata_n_sites", CELL_COUNT]],
    )
    assert (wells[N_TILES] == 0).all()
    assert wells[feature_columns(wells)].dtypes.eq(np.float32).all()
    assert len(wells) == 6


def test_random_features_are_deterministic_and_independent_per_plate(tmp_path: Path) -> None:
    a = random_well_features(manifest("P1"), dim=64, seed=0)
    again = random_well_features(manifest("P1").sample(frac=1.0, random_state=1), 64, seed=0)
    pd.testing.assert_frame_equal(a, again)  # site order does not matter
    other_plate = random_well_features(manifest("P2"), dim=64, seed=0)
    other_seed = random_well_features(manifest("P1"), dim=64, seed=1)
    feats = feature_columns(a)
    for other in (other_plate, other_seed):
        assert not np.allclose(a[feats].to_numpy(), other[feats].to_numpy())
    values = a[feats].to_numpy()
    assert abs(values.mean()) < 0.2
    assert values.std() == pytest.approx(1.0, abs=0.1)
    path = tmp_path / "manifest.parquet"
    manifest("P1").to_parquet(path)
    embed_random_features(path, tmp_path / "out" / "P1.parquet", dim=64, seed=0)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "P1.parquet"), a)


def test_random_features_refuse_two_plates() -> None:
    with pytest.raises(ValueError, match="one plate"):
        random_well_features(pd.concat([manifest("P1"), manifest("P2")]), dim=4)


def test_random_features_need_no_torch() -> None:
    code = (
        "import sys; from paintssl.embed.random_features import embed_random_features; "
        "from paintssl.pretrain.config import ModelConfig; print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False", result.stderr
