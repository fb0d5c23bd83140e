"""Model entries (ModelConfig) and the well embeddings of random_features and oracle."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paintssl.embed.oracle import embed_oracle, oracle_wells
from paintssl.embed.random_features import embed_random_features, random_well_features
from paintssl.embed.wells import aggregate_wells
from paintssl.inputs import InputError
from paintssl.pretrain.config import (
    ModelConfig,
    builds_network,
    is_trained,
    needs_synthetic_truth,
)
from paintssl.synthetic.config import LATENT_NAMES, SyntheticConfig
from paintssl.synthetic.layout import plate_layout, render_metadata
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
        ({"method": "oracle", **VIT}, "builds no network: remove backbone, img_size"),
        ({"method": "oracle", "backbone_kwargs": {"patch_size": 8}}, "remove backbone_kwargs"),
        ({"method": "oracle", "train": {"steps": 3}}, "builds no network: remove train"),
        ({"method": "oracle", "method_params": {"dim": 3}}, "'oracle' has no parameters"),
        ({"method": "oracle", "profiles": "p.csv"}, "only by method 'external'"),
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
    oracle = ModelConfig("oracle", profile_steps=["mad"])
    assert oracle.backbone is None
    assert not builds_network("oracle")
    assert not is_trained("oracle")
    assert [needs_synthetic_truth(m) for m in ("oracle", "random_features", "dino")] == [
        True,
        False,
        False,
    ]


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


ORACLE_CFG = SyntheticConfig(
    site_size=64,
    sources_per_cell_line=1,
    batches_per_source=1,
    plates_per_batch=1,
    eval_plates_per_batch=0,
    n_targets=4,
    compounds_per_target=3,
    n_dual_target_compounds=2,
    n_gene_families=3,
    genes_per_family=4,
)
"""Two plates (one per cell line) of 96 wells."""


@pytest.fixture(scope="module")
def truth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic dataset's truth.parquet, as rule render_synthetic_metadata writes it."""
    root = tmp_path_factory.mktemp("truth")
    render_metadata(ORACLE_CFG, root / "metadata.parquet", root / "truth.parquet")
    return root / "truth.parquet"


def synthetic_manifest(plate: str, sites: int = 2) -> pd.DataFrame:
    """A manifest's key columns for every well of a synthetic plate (shuffled sites)."""
    wells = plate_layout(ORACLE_CFG, plate)["well"]
    rows = [
        {"Metadata_Source": "source_1", "Metadata_Batch": "source_1_batch_1",
         "Metadata_Plate": plate, "Metadata_Well": w, "Metadata_Site": str(s),
         "cell_count": 3 * i + s}
        for i, w in enumerate(wells)
        for s in range(1, sites + 1)
    ]  # fmt: skip
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_oracle_features_are_the_latent_each_well_was_rendered_from(truth_file: Path) -> None:
    plate = "src02_b01_p01"  # the second cell line's plate
    wells = oracle_wells(pd.read_parquet(truth_file), synthetic_manifest(plate), truth_file)
    layout = plate_layout(ORACLE_CFG, plate).sort_values("well", ignore_index=True)
    assert list(wells["Metadata_Well"]) == list(layout["well"])
    expected = np.stack(layout["latent"].to_numpy()).astype(np.float32)
    assert feature_columns(wells) == [f"truth_{i:04d}" for i in range(len(LATENT_NAMES))]
    np.testing.assert_array_equal(wells[feature_columns(wells)].to_numpy(), expected)
    assert (wells["Metadata_Plate"] == plate).all()
    assert (wells["Metadata_n_sites"] == 2).all()


def test_oracle_wells_follow_the_well_table_contract(truth_file: Path, tmp_path: Path) -> None:
    sites = synthetic_manifest("src01_b01_p01")
    wells = oracle_wells(pd.read_parquet(truth_file), sites, truth_file)
    chance = random_well_features(sites, dim=4, seed=0)
    meta = [c for c in chance.columns if c.startswith("Metadata_")]
    assert list(wells.columns[: len(meta)]) == meta  # the same rows, keys and counts
    pd.testing.assert_frame_equal(wells[meta], chance[meta])
    assert list(meta[: len(WELL_KEYS)]) == list(WELL_KEYS)
    assert (wells[N_TILES] == 0).all()
    assert wells[CELL_COUNT].dtype == np.int64
    assert wells[feature_columns(wells)].dtypes.eq(np.float32).all()
    assert len(wells) == 96
    path = tmp_path / "manifest.parquet"
    sites.to_parquet(path)
    embed_oracle(truth_file, path, tmp_path / "out" / "src01_b01_p01.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "out" / "src01_b01_p01.parquet"), wells
    )


def test_oracle_refuses_a_truth_table_without_a_well_of_the_manifest(truth_file: Path) -> None:
    plate = "src01_b01_p01"
    truth = pd.read_parquet(truth_file)
    truth = truth[~((truth["Metadata_Plate"] == plate) & (truth["Metadata_Well"] == "C07"))]
    message = rf"t\.parquet: no ground truth for well\(s\) C07 of plate {plate} \(in its manifest\)"
    with pytest.raises(
        InputError, match=message + ".*synthetic dataset.*render_synthetic_metadata"
    ):
        oracle_wells(truth, synthetic_manifest(plate), "t.parquet")
    other = synthetic_manifest(plate).assign(Metadata_Plate="P9")  # a plate the table lacks
    with pytest.raises(
        InputError, match=r"well\(s\) A01, A02, A03, A04, A05 and 91 more of plate P9"
    ):
        oracle_wells(truth, other, "t.parquet")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda t: t.filter(like="Metadata_"), r"t\.parquet: no truth_\* columns"),
        (lambda t: t.drop(columns="Metadata_Well"), "missing column.*Metadata_Well"),
        (lambda t: pd.concat([t, t.iloc[:2]]), "lists well.* twice"),
        (lambda t: t.assign(truth_0003=np.nan), "non-finite ground truth"),
    ],
)
def test_oracle_refuses_a_table_that_is_not_the_ground_truth(
    truth_file: Path, change: object, pattern: str
) -> None:
    with pytest.raises(InputError, match=pattern):
        oracle_wells(
            change(pd.read_parquet(truth_file)), synthetic_manifest("src01_b01_p01"), "t.parquet"
        )
