"""External profiles (method external): reading, validation errors, per-plate embeddings."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paintssl.embed.wells import aggregate_wells
from paintssl.external import import_external_profiles, read_external_profiles
from paintssl.inputs import InputError, read_metadata
from paintssl.profiles.normalize import annotate_wells
from paintssl.tables import PLATE, WELL, WELL_KEYS, feature_columns
from tests.paths import SHARED_DATA, require_shared

LINCS_PLATE = SHARED_DATA / "cytominer-eval-lincs" / "SQ00015054_normalized_feature_select.csv.gz"
LINCS_FEATURES = 454


def lincs_metadata(path: Path, out: Path) -> pd.DataFrame:
    """A metadata table for the LINCS plate from its own Metadata columns, validated."""
    meta = pd.read_csv(path, usecols=lambda c: c.startswith("Metadata_"), dtype=str)
    table = pd.DataFrame(
        {
            PLATE: meta[PLATE],
            WELL: meta[WELL],
            "Metadata_JCP2022": meta["Metadata_broad_sample"],
            "Metadata_pert_type": np.where(
                meta["Metadata_broad_sample"] == "DMSO", "negcon", "trt"
            ),
            "Metadata_target": meta["Metadata_target"],
        }
    )
    table.to_parquet(out, index=False)
    return read_metadata(out, ["SQ00015054"])


def test_lincs_cellprofiler_plate_reads_as_external_profiles(tmp_path: Path) -> None:
    require_shared(LINCS_PLATE)
    metadata = lincs_metadata(LINCS_PLATE, tmp_path / "metadata.parquet")
    profiles = read_external_profiles(LINCS_PLATE, metadata, ["SQ00015054"])
    assert len(profiles) == 384
    assert list(profiles.columns[:2]) == [PLATE, WELL]
    features = feature_columns(profiles)
    assert len(features) == LINCS_FEATURES
    assert [c for c in profiles.columns if c.startswith("Metadata_")] == [PLATE, WELL]
    assert profiles[features].dtypes.eq(np.float64).all()
    assert np.isfinite(profiles[features].to_numpy()).all()

    out = tmp_path / "embeddings" / "SQ00015054.parquet"
    plates = [{"plate": "SQ00015054", "source": "broad", "batch": "2016_04_01_a549_48hr_batch1"}]
    import_external_profiles(LINCS_PLATE, tmp_path / "metadata.parquet", plates, [out])
    wells = pd.read_parquet(out)
    site_like = wells[list(WELL_KEYS)].assign(Metadata_Site="1", Metadata_n_tiles=1)
    ssl_columns = aggregate_wells(site_like.assign(Metadata_cell_count=1, emb_0000=0.0)).columns
    assert list(wells.columns[:7]) == list(ssl_columns[:7])  # keys and counts, as SSL models
    assert wells[["Metadata_n_sites", "Metadata_n_tiles", "Metadata_cell_count"]].isna().all().all()
    assert len(feature_columns(wells)) == LINCS_FEATURES
    annotated = annotate_wells([out], metadata)
    assert len(annotated) == 384
    assert (annotated["Metadata_pert_type"] == "negcon").sum() == 24


def plate_table(plates: tuple[str, ...] = ("P1", "P2"), wells: int = 3) -> pd.DataFrame:
    """Profiles of ``wells`` wells per plate: keys, an extra annotation and two features."""
    rows = [(p, f"A{w:02d}") for p in plates for w in range(1, wells + 1)]
    table = pd.DataFrame(rows, columns=[PLATE, WELL])
    table["Metadata_moa"] = "x"
    table["f_area"] = np.arange(len(table), dtype=float)
    table["f_int"] = np.arange(len(table)) * 2
    return table


def metadata_for(table: pd.DataFrame) -> pd.DataFrame:
    return table[[PLATE, WELL]].assign(Metadata_JCP2022="c", Metadata_pert_type="trt")


def write(table: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["profiles.csv", "profiles.csv.gz", "profiles.parquet"])
def test_only_run_plates_are_kept_and_extra_metadata_is_dropped(tmp_path: Path, name: str) -> None:
    table = plate_table(("P1", "P2", "P3"))
    meta = metadata_for(table)
    out = read_external_profiles(write(table, tmp_path / name), meta, ["P2", "P1"])
    assert list(out.columns) == [PLATE, WELL, "f_area", "f_int"]
    assert sorted(set(out[PLATE])) == ["P1", "P2"]
    assert out[["f_area", "f_int"]].dtypes.eq(np.float64).all()
    assert out[[PLATE, WELL]].equals(out[[PLATE, WELL]].sort_values([PLATE, WELL]))


def test_per_plate_embeddings_take_source_and_batch_from_the_sheet(tmp_path: Path) -> None:
    table = plate_table()
    path = write(table, tmp_path / "profiles.parquet")
    metadata_for(table).to_parquet(tmp_path / "metadata.parquet")
    plates = [{"plate": "P2", "source": "s2", "batch": "b2"}]
    plates += [{"plate": "P1", "source": "s1", "batch": "b1"}]
    outs = [tmp_path / "P2.parquet", tmp_path / "P1.parquet"]
    import_external_profiles(path, tmp_path / "metadata.parquet", plates, outs)
    p2 = pd.read_parquet(outs[0])
    assert set(p2[PLATE]) == {"P2"}
    assert set(p2["Metadata_Source"]) == {"s2"}
    assert set(p2["Metadata_Batch"]) == {"b2"}
    assert list(p2.columns) == [*WELL_KEYS, "Metadata_n_sites", "Metadata_n_tiles",
                                "Metadata_cell_count", "f_area", "f_int"]  # fmt: skip


def expect_error(tmp_path: Path, table: pd.DataFrame, meta: pd.DataFrame, pattern: str) -> None:
    path = write(table, tmp_path / "profiles.csv")
    with pytest.raises(InputError, match=pattern) as err:
        read_external_profiles(path, meta, ["P1", "P2"])
    assert str(path) in str(err.value)


def test_missing_key_column_is_named(tmp_path: Path) -> None:
    table = plate_table()
    expect_error(
        tmp_path, table.drop(columns=WELL), metadata_for(table), "missing column.*Metadata_Well"
    )


def test_duplicate_wells_are_named_with_their_lines(tmp_path: Path) -> None:
    table = plate_table()
    table.loc[1, WELL] = "A01"
    expect_error(
        tmp_path, table, metadata_for(plate_table()), re.escape("('P1', 'A01')") + ".*2, 3"
    )


def test_wells_missing_from_the_metadata_are_named(tmp_path: Path) -> None:
    table = plate_table()
    meta = metadata_for(table).iloc[1:]
    expect_error(tmp_path, table, meta, "1 well.*not in the metadata table.*P1/A01.*line.*2")


def test_run_plates_absent_from_the_table_are_named(tmp_path: Path) -> None:
    table = plate_table(("P1",))
    expect_error(tmp_path, table, metadata_for(table), "no wells for plate.*P2")


def test_non_numeric_feature_columns_are_named(tmp_path: Path) -> None:
    table = plate_table().assign(f_label="low")
    expect_error(tmp_path, table, metadata_for(table), "non-numeric.*f_label.*'low'.*Metadata_")


def test_all_nan_feature_columns_are_named(tmp_path: Path) -> None:
    table = plate_table().assign(f_empty=np.nan)
    table.loc[0, "f_int"] = np.nan  # partly missing is allowed
    expect_error(tmp_path, table, metadata_for(table), r"f_empty are empty \(all NaN\)")


def test_all_nan_is_judged_on_the_run_plates_only(tmp_path: Path) -> None:
    table = plate_table(("P1", "P2", "P3")).assign(f_p3=np.nan)
    table.loc[table[PLATE] == "P3", "f_p3"] = 1.0
    path = write(table, tmp_path / "profiles.csv")
    with pytest.raises(InputError, match="f_p3"):
        read_external_profiles(path, metadata_for(table), ["P1", "P2"])


def test_no_feature_columns_and_missing_file(tmp_path: Path) -> None:
    table = plate_table()[[PLATE, WELL, "Metadata_moa"]]
    expect_error(tmp_path, table, metadata_for(table), "no feature columns")
    with pytest.raises(InputError, match="not found"):
        read_external_profiles(tmp_path / "absent.parquet", metadata_for(table), ["P1"])
