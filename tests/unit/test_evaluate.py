"""evaluate_model on planted profiles: table shape, chance levels and undefined metrics."""

from pathlib import Path

import pandas as pd
import pytest

from paintssl.evaluate.model import EvalConfig, evaluate_model
from paintssl.evaluate.table import TABLE_COLUMNS
from tests.planted import PlantedDesign, write_planted_profiles


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("profiles")
    return write_planted_profiles(PlantedDesign(), folder, seed=0)


@pytest.fixture(scope="module")
def table(planted: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("eval") / "model.tsv"
    evaluate_model(profiles=planted, out_tsv=out, cfg=EvalConfig(null_size=500), seed=0)
    return pd.read_csv(out, sep="\t")


def value(table: pd.DataFrame, metric: str, variant: str = "observed") -> pd.Series:
    rows = table[(table["metric"] == metric) & (table["variant"] == variant)]
    return rows.set_index("setting")["value"]


def test_table_has_documented_columns_and_one_row_per_setting(table: pd.DataFrame) -> None:
    assert list(table.columns) == TABLE_COLUMNS
    keys = ["metric", "level", "setting", "variant"]
    assert not table.duplicated(keys).any()
    perturbation = table[table["metric"] == "perturbation_map"]
    assert set(perturbation["setting"]) == {"U2OS", "A549"}
    assert set(perturbation["variant"]) == {"observed", "random_features", "shuffled_labels"}


def test_planted_replicates_are_retrieved_and_chance_is_low(table: pd.DataFrame) -> None:
    for metric in ("perturbation_map", "cross_source_map"):
        assert (value(table, metric) > 0.95).all()
        assert (value(table, metric, "random_features") < 0.3).all()
        assert (value(table, metric, "shuffled_labels") < 0.3).all()
    observed = table[(table["metric"] == "perturbation_map") & (table["variant"] == "observed")]
    assert (observed["fraction_retrieved"] == 1.0).all()
    # 12 compounds + 12 genes, 4 batches each, per cell line; controls are never queries
    assert (observed["n_queries"] == 96).all()
    assert (observed["n_groups"] == 24).all()


def test_planted_replicates_replicate_and_chance_does_not(table: pd.DataFrame) -> None:
    # every replicate of a planted perturbation is closer than 95 % of non-replicate pairs
    assert (value(table, "percent_replicating") > 0.9).all()
    assert (value(table, "median_replicate_correlation") > 0.5).all()
    for variant in ("random_features", "shuffled_labels"):  # 5 % above the 95th percentile
        assert (value(table, "percent_replicating", variant).between(0.0, 0.2)).all()
        assert (value(table, "median_replicate_correlation", variant).abs() < 0.2).all()


def test_percent_replicating_subsample_is_capped(planted: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "model.tsv"
    evaluate_model({"batch": planted["batch"]}, out, EvalConfig(null_size=100, max_replicating=40))
    rows = pd.read_csv(out, sep="\t").query("metric == 'percent_replicating'")
    assert (rows["n_queries"] == 40).all()
    assert rows["value"].notna().all()


def test_group_maps_beat_their_chance_levels(table: pd.DataFrame) -> None:
    for metric in ("target_map", "gene_family_map"):
        assert (value(table, metric) > value(table, metric, "random_features") + 0.15).all()


def test_missing_level_and_missing_labels_give_nan_rows(
    planted: dict[str, Path], tmp_path: Path
) -> None:
    consensus = pd.read_parquet(planted["consensus"]).drop(columns="Metadata_gene_family")
    consensus.to_parquet(tmp_path / "consensus.parquet")
    out = tmp_path / "model.tsv"
    evaluate_model({"consensus": tmp_path / "consensus.parquet"}, out, EvalConfig(null_size=100))
    table = pd.read_csv(out, sep="\t")
    family = table[table["metric"] == "gene_family_map"]
    assert family["value"].isna().all()
    assert family["note"].str.contains("Metadata_gene_family").all()
    batch = table[table["metric"] == "perturbation_map"]
    assert batch["value"].isna().all()
    assert batch["note"].str.contains("batch-level").all()
    assert value(table, "target_map").notna().all()


def test_unknown_level_is_an_error(planted: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown profile levels"):
        evaluate_model({"plate": planted["well"]}, tmp_path / "x.tsv", EvalConfig())


@pytest.mark.parametrize(("chain", "note"), [(["variance", "mad"], "variance,mad"), ([], "none")])
def test_profile_chain_is_recorded_in_one_row(
    planted: dict[str, Path], tmp_path: Path, chain: list[str], note: str
) -> None:
    out = tmp_path / "model.tsv"
    consensus = {"consensus": planted["consensus"]}
    evaluate_model(consensus, out, EvalConfig(null_size=100), profile_chain=chain)
    table = pd.read_csv(out, sep="\t", keep_default_na=False, na_values=["NA"])
    rows = table[table["metric"] == "profile_chain"]
    assert rows[["level", "setting", "variant", "note"]].values.tolist() == [
        ["well", "all", "observed", note]
    ]
    assert rows["value"].isna().all()


def test_table_without_a_chain_has_no_profile_chain_row(table: pd.DataFrame) -> None:
    assert "profile_chain" not in set(table["metric"])


def test_transfer_rows_cover_the_four_settings_and_beat_chance(table: pd.DataFrame) -> None:
    settings = {"U2OS->U2OS", "U2OS->A549", "A549->U2OS", "A549->A549"}
    for metric in ("transfer_accuracy", "transfer_macro_f1"):
        rows = table[table["metric"] == metric]
        assert set(rows["setting"]) == settings
        assert set(rows["variant"]) == {"observed", "random_features", "shuffled_labels"}
        wide = rows.pivot(index="setting", columns="variant", values="value")
        assert (wide["observed"] > wide[["random_features", "shuffled_labels"]].max(axis=1)).all()
    observed = table.query("metric == 'transfer_accuracy' and variant == 'observed'")
    # 24 perturbations x 2 wells on each of a cell line's 4 plates (one per batch); no DMSO
    assert (observed["n_queries"] == 192).all()
    assert observed["note"].str.startswith("4 plate folds (5 asked").all()
