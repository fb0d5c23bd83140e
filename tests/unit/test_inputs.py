"""Validation of the plates sheet, JUMP load_data.csv and the well metadata table."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from paintssl.inputs import InputError, read_load_data, read_metadata, read_plate_sheet
from paintssl.tables import CHANNELS

JUMP_FILE_ORDER = ("AGP", "DNA", "ER", "Mito", "RNA")  # alphabetical, as in cpg0016


def write_load_data(
    folder: Path,
    sites: int = 2,
    order: tuple[str, ...] = JUMP_FILE_ORDER,
    path_name: str = "images",
    extra_channels: tuple[str, ...] = (),
) -> Path:
    """Tiny per-channel TIFFs (channel k filled with 100 * (k + 1)) and their load_data.csv."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(1, sites + 1):
        row = {"Metadata_Plate": "P1", "Metadata_Well": "A01", "Metadata_Site": str(s)}
        for ch in (*order, *extra_channels):
            name = f"A01_s{s}_{ch}.tiff"
            value = 100 * (CHANNELS.index(ch) + 1) if ch in CHANNELS else 7
            tifffile.imwrite(folder / "images" / name, np.full((8, 8), value, np.uint16))
            row[f"FileName_Orig{ch}"] = name
            row[f"PathName_Orig{ch}"] = path_name
        rows.append(row)
    table = pd.DataFrame(rows)
    columns = list(table.columns)
    np.random.default_rng(0).shuffle(columns)
    csv = folder / "load_data.csv"
    table[columns].to_csv(csv, index=False)
    return csv


def edit_csv(csv: Path, edit) -> Path:
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    edit(table).to_csv(csv, index=False)
    return csv


def test_channels_are_mapped_by_name_in_any_column_order(tmp_path: Path) -> None:
    csv = write_load_data(tmp_path, extra_channels=("Brightfield",))
    table = read_load_data(csv)
    expected = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"] + [
        f"path_{ch}" for ch in CHANNELS
    ]
    assert list(table.columns) == expected
    assert len(table) == 2
    assert table["Metadata_Site"].tolist() == ["1", "2"]
    for k, ch in enumerate(CHANNELS):
        path = Path(table.at[0, f"path_{ch}"])
        assert path.is_absolute()
        assert path.name == f"A01_s1_{ch}.tiff"
        assert tifffile.imread(path)[0, 0] == 100 * (k + 1)


def test_custom_channel_subset_and_order(tmp_path: Path) -> None:
    table = read_load_data(write_load_data(tmp_path), channels=("Mito", "DNA"))
    assert [c for c in table.columns if c.startswith("path_")] == ["path_Mito", "path_DNA"]


@pytest.mark.parametrize("path_name", ["images", "", "ABS"])
def test_relative_empty_and_absolute_path_names(tmp_path: Path, path_name: str) -> None:
    folder = str(tmp_path / "images") if path_name == "ABS" else path_name
    csv = write_load_data(tmp_path, path_name=folder)
    if path_name == "":  # files next to the CSV
        for f in (tmp_path / "images").iterdir():
            f.rename(tmp_path / f.name)
    table = read_load_data(csv)
    assert all(Path(p).is_file() for p in table["path_DNA"])


def test_missing_metadata_column_is_named(tmp_path: Path) -> None:
    csv = edit_csv(write_load_data(tmp_path), lambda t: t.drop(columns="Metadata_Well"))
    with pytest.raises(InputError, match=r"load_data\.csv: missing column\(s\) Metadata_Well"):
        read_load_data(csv)


def test_misnamed_channel_lists_found_and_expected(tmp_path: Path) -> None:
    csv = edit_csv(
        write_load_data(tmp_path),
        lambda t: t.rename(
            columns={
                "FileName_OrigDNA": "FileName_OrigHoechst",
                "PathName_OrigDNA": "PathName_OrigHoechst",
            }
        ),
    )
    with pytest.raises(InputError) as err:
        read_load_data(csv)
    message = str(err.value)
    assert str(csv) in message
    assert "FileName_OrigDNA" in message
    assert "not expected: Hoechst" in message
    assert "Expected channels DNA, ER, RNA, AGP, Mito" in message


def test_missing_files_are_counted_and_listed(tmp_path: Path) -> None:
    csv = write_load_data(tmp_path, sites=3)
    for s in (2, 3):
        (tmp_path / "images" / f"A01_s{s}_ER.tiff").unlink()
    with pytest.raises(InputError, match=r"2 listed image file\(s\) do not exist") as err:
        read_load_data(csv)
    assert "line 3 FileName_OrigER" in str(err.value)
    assert "A01_s2_ER.tiff" in str(err.value)


def test_duplicate_site_names_lines(tmp_path: Path) -> None:
    csv = edit_csv(write_load_data(tmp_path), lambda t: t.assign(Metadata_Site="1"))
    with pytest.raises(InputError, match=r"duplicate .* line\(s\) 2, 3"):
        read_load_data(csv)


def test_two_plates_in_one_file(tmp_path: Path) -> None:
    csv = edit_csv(write_load_data(tmp_path), lambda t: t.assign(Metadata_Plate=["P1", "P2"]))
    with pytest.raises(InputError, match=r"holds 2 plates .*one load_data\.csv per plate"):
        read_load_data(csv)


def test_bad_well_name(tmp_path: Path) -> None:
    csv = edit_csv(write_load_data(tmp_path), lambda t: t.assign(Metadata_Well=["A01", "A/2"]))
    with pytest.raises(InputError, match=r"Metadata_Well has invalid value\(s\) 'A/2' on line"):
        read_load_data(csv)


@pytest.mark.parametrize("content", ["", "Metadata_Plate,Metadata_Well\n"])
def test_empty_load_data(tmp_path: Path, content: str) -> None:
    csv = tmp_path / "load_data.csv"
    csv.write_text(content)
    with pytest.raises(InputError, match=re.escape(str(csv))):
        read_load_data(csv)


def test_remote_paths_are_refused(tmp_path: Path) -> None:
    csv = edit_csv(write_load_data(tmp_path), lambda t: t.assign(PathName_OrigRNA="s3://bucket/x"))
    with pytest.raises(InputError, match="PathName_OrigRNA is a URL"):
        read_load_data(csv)


def test_illum_columns(tmp_path: Path) -> None:
    def add_illum(table: pd.DataFrame) -> pd.DataFrame:
        for ch in JUMP_FILE_ORDER:
            np.save(tmp_path / f"P1_Illum{ch}.npy", np.ones((8, 8)))
            table[f"FileName_Illum{ch}"] = f"P1_Illum{ch}.npy"
            table[f"PathName_Illum{ch}"] = str(tmp_path)
        return table

    table = read_load_data(edit_csv(write_load_data(tmp_path), add_illum))
    assert Path(table.at[1, "illum_Mito"]).name == "P1_IllumMito.npy"
    partial = edit_csv(tmp_path / "load_data.csv", lambda t: t.drop(columns="FileName_IllumER"))
    with pytest.raises(InputError, match="lacks FileName_IllumER"):
        read_load_data(partial)


def write_sheet(folder: Path, rows: list[dict]) -> Path:
    path = folder / "plates.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


SHEET_ROW = {"plate": "P1", "batch": "B1", "source": "S1", "load_data": "P1/load_data.csv"}


def test_plate_sheet_resolves_paths(tmp_path: Path) -> None:
    sheet = read_plate_sheet(write_sheet(tmp_path, [SHEET_ROW, {**SHEET_ROW, "plate": "P2"}]))
    assert sheet["plate"].tolist() == ["P1", "P2"]
    assert sheet.at[0, "load_data"] == str(tmp_path.resolve() / "P1" / "load_data.csv")
    assert sheet["split"].isna().all()


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([{**SHEET_ROW, "plate": "P 1"}], r"column plate has invalid value\(s\) 'P 1' on line"),
        ([SHEET_ROW, SHEET_ROW], r"duplicate \(plate\) = \('P1',\) .* line\(s\) 2, 3"),
        ([{**SHEET_ROW, "split": "test"}], r"split has value\(s\) \['test'\] on line\(s\) 2"),
        ([{k: v for k, v in SHEET_ROW.items() if k != "batch"}], r"missing column\(s\) batch"),
        ([{**SHEET_ROW, "source": ""}], r"column source is empty on line\(s\) 2"),
    ],
)
def test_plate_sheet_errors(tmp_path: Path, rows: list[dict], pattern: str) -> None:
    path = write_sheet(tmp_path, rows)
    with pytest.raises(InputError, match=pattern) as err:
        read_plate_sheet(path)
    assert str(path) in str(err.value)


def metadata(**overrides) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "Metadata_Plate": ["P1", "P1", "P2", "P2"],
            "Metadata_Well": ["A01", "A02", "A01", "A02"],
            "Metadata_JCP2022": ["JCP1", "DMSO", "JCP1", "DMSO"],
            "Metadata_pert_type": ["trt", "negcon", "trt", "negcon"],
            "Metadata_target": ["T1|T2", None, "T1|T2", None],
        }
    )
    return table.assign(**overrides)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".tsv"])
def test_metadata_reads_and_adds_optional_columns(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"meta{suffix}"
    table = metadata()
    if suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    out = read_metadata(path, ["P1"])
    assert out["Metadata_Plate"].tolist() == ["P1", "P1"]
    assert out.at[0, "Metadata_target"] == "T1|T2"
    assert pd.isna(out.at[1, "Metadata_target"])
    assert out["Metadata_gene"].isna().all()
    assert out["Metadata_cell_line"].isna().all()


@pytest.mark.parametrize(
    ("table", "plates", "pattern"),
    [
        (metadata(Metadata_pert_type=["trt", "negcon", "ctrl", "negcon"]), ["P1", "P2"],
         r"Metadata_pert_type has value\(s\) \['ctrl'\] on line\(s\) 4"),
        (metadata(Metadata_Well="A01"), ["P1"], r"duplicate .* line\(s\) 2, 3"),
        (metadata(), ["P1", "P3"], r"no wells for plate\(s\) P3"),
        (metadata(Metadata_pert_type="trt"), ["P2"], r"plate\(s\) P2 have no negcon well"),
        (metadata().drop(columns="Metadata_JCP2022"), ["P1"], "missing column.*Metadata_JCP2022"),
    ],
)  # fmt: skip
def test_metadata_errors(tmp_path: Path, table: pd.DataFrame, plates: list, pattern: str) -> None:
    path = tmp_path / "meta.csv"
    table.to_csv(path, index=False)
    with pytest.raises(InputError, match=pattern) as err:
        read_metadata(path, plates)
    assert str(path) in str(err.value)
