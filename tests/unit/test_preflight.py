"""Preflight: every problem of the inputs in one pass, image headers checked without pixels."""

import logging
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from paintssl.preflight import (
    COLUMNS,
    Finding,
    PreflightError,
    image_problems,
    preflight,
    preflight_sheet,
    run_preflight,
)

from .test_inputs import SHEET_ROW, edit_csv, write_load_data, write_sheet


def write_metadata(path: Path, wells: list[tuple[str, str, str]]) -> Path:
    """A metadata CSV with one (plate, well, pert_type) row per well."""
    rows = [
        {"Metadata_Plate": p, "Metadata_Well": w, "Metadata_JCP2022": t, "Metadata_pert_type": t}
        for p, w, t in wells
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def broken_set_up(tmp_path: Path) -> tuple[list[str], list[Path], Path, set[tuple]]:
    """Two plates and a metadata table with nine different problems; the expected findings."""
    p1 = write_load_data(tmp_path / "P1", sites=7)
    images = tmp_path / "P1" / "images"
    (images / "A01_s1_DNA.tiff").unlink()
    (images / "A01_s2_ER.tiff").write_bytes(b"")
    truncated = images / "A01_s3_RNA.tiff"
    truncated.write_bytes(truncated.read_bytes()[:-20])
    tifffile.imwrite(images / "A01_s4_AGP.tiff", np.zeros((8, 8, 3), np.uint16), photometric="rgb")
    tifffile.imwrite(images / "A01_s5_Mito.tiff", np.zeros((8, 8), np.float32))
    tifffile.imwrite(images / "A01_s6_DNA.tiff", np.zeros((16, 16), np.uint16))
    edit_csv(p1, lambda t: t.assign(Metadata_Well=["A01"] * 6 + ["A02"]))
    p2 = edit_csv(
        write_load_data(tmp_path / "P2"),
        lambda t: t.drop(columns=["FileName_OrigMito", "PathName_OrigMito"]).assign(
            Metadata_Plate="P2"
        ),
    )
    wells = [("P1", "A01", "negcon"), ("P1", "B01", "trt"), ("P2", "A01", "negcon")]
    meta = write_metadata(tmp_path / "wells.csv", wells)
    expected = {
        ("error", str(p1), 2, "FileName_OrigDNA", "A01_s1_DNA.tiff (well A01, site 1) does not"),
        ("error", str(p1), 3, "FileName_OrigER", "A01_s2_ER.tiff (well A01, site 2) is empty"),
        ("error", str(p1), 4, "FileName_OrigRNA", "A01_s3_RNA.tiff (well A01, site 3) is trunc"),
        ("error", str(p1), 5, "FileName_OrigAGP", "A01_s4_AGP.tiff (well A01, site 4) has 3 sa"),
        ("error", str(p1), 6, "FileName_OrigMito", "site 5) has float pixel type float32"),
        ("error", str(p1), 7, "FileName_OrigDNA", "site 6) has shape (16, 16); 31 other images"),
        ("error", str(p1), 8, "Metadata_Well=A02", "well A02 of plate P1 has images but no row"),
        ("error", str(p2), None, "FileName_OrigMito", "missing column(s) FileName_OrigMito"),
        ("warning", str(meta), None, "Metadata_Plate=P1, Metadata_Well=B01", "no images"),
    }
    return ["P1", "P2"], [p1, p2], meta, expected


def keyed(findings: list[Finding]) -> set[tuple]:
    return {(f.severity, f.file, f.row, f.key) for f in findings}


def test_every_problem_is_one_finding_in_one_call(tmp_path: Path) -> None:
    plates, load_data, meta, expected = broken_set_up(tmp_path)
    findings = preflight(plates, load_data, meta)
    assert len(findings) == len(expected)
    assert keyed(findings) == {e[:4] for e in expected}
    for finding in findings:
        fragment = next(e[4] for e in expected if e[:4] == keyed([finding]).pop())
        assert fragment in finding.problem, finding
        assert finding.fix, finding


def test_raise_lists_every_error_after_writing_and_logging_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plates, load_data, meta, expected = broken_set_up(tmp_path)
    out = tmp_path / "results/qc/preflight.tsv"
    caplog.set_level(logging.INFO)
    with pytest.raises(PreflightError, match=r"found 8 error\(s\)") as err:
        run_preflight(plates, load_data, meta, out)
    findings = preflight(plates, load_data, meta)
    for finding in findings:
        assert str(finding) in caplog.text
        assert (str(finding) in str(err.value)) == (finding.severity == "error")
    assert "preflight: 8 error(s), 1 warning(s)" in caplog.text
    assert f"{load_data[0]}: 7 error(s), 0 warning(s)" in caplog.text
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len(expected)
    assert sorted(table["severity"]) == ["error"] * 8 + ["warning"]


def test_clean_plate_gives_a_header_only_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pixels(*args, **kwargs):
        raise AssertionError("preflight decoded pixel data")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_pixels)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", no_pixels)
    load_data = write_load_data(tmp_path / "P1", sites=3)
    meta = write_metadata(tmp_path / "wells.csv", [("P1", "A01", "negcon")])
    out = tmp_path / "preflight.tsv"
    assert run_preflight(["P1"], [load_data], meta, out, threads=2) == []
    assert out.read_text() == "\t".join(COLUMNS) + "\n"


def test_plate_sheet_and_metadata_problems_are_findings(tmp_path: Path) -> None:
    bad_sheet = write_sheet(tmp_path, [{**SHEET_ROW, "split": "test"}])
    meta = write_metadata(tmp_path / "wells.csv", [("P1", "A01", "trt")])
    [finding] = preflight_sheet(bad_sheet, meta)
    assert (finding.file, finding.row, finding.key) == (str(bad_sheet), 2, "split")
    assert "use train, eval" in finding.fix
    write_load_data(tmp_path / "P1")
    (tmp_path / "P1/images/A01_s2_DNA.tiff").unlink()
    findings = preflight_sheet(write_sheet(tmp_path, [SHEET_ROW]), meta)
    assert [(f.file, f.row) for f in findings] == [
        (str(tmp_path.resolve() / "P1/load_data.csv"), 3),
        (str(meta), None),
    ]
    assert "no negcon well" in findings[1].problem


def test_load_data_plate_name_must_match_the_sheet(tmp_path: Path) -> None:
    load_data = write_load_data(tmp_path / "P1")
    meta = write_metadata(tmp_path / "wells.csv", [("P9", "A01", "negcon")])
    [finding] = preflight(["P9"], [load_data], meta)
    assert (finding.row, finding.key) == (2, "Metadata_Plate")
    assert "names plate 'P1'" in finding.problem


@pytest.mark.parametrize(
    ("name", "write", "problem"),
    [
        ("ok.tiff", lambda p: tifffile.imwrite(p, np.zeros((8, 8), np.uint8)), None),
        ("one.tif", lambda p: tifffile.imwrite(p, np.zeros((1, 8, 8), np.uint16)), None),
        ("ok.png", lambda p: iio.imwrite(p, np.zeros((8, 8), np.uint16)), None),
        ("rgb.png", lambda p: iio.imwrite(p, np.zeros((8, 8, 3), np.uint8)), "PNG mode RGB"),
        ("i32.tif", lambda p: tifffile.imwrite(p, np.zeros((8, 8), np.int32)), "integer pixel"),
        ("stack.tif", lambda p: tifffile.imwrite(p, np.zeros((2, 8, 8), np.uint16)), "(2, 8, 8)"),
        ("junk.tif", lambda p: p.write_bytes(b"not a tiff"), "not a readable image"),
        ("x.jpg", lambda p: p.write_bytes(b"\xff\xd8"), "unsupported type '.jpg'"),
    ],
)
def test_image_header_checks(tmp_path: Path, name: str, write, problem: str | None) -> None:
    path = tmp_path / name
    write(path)
    shape, problems = image_problems(path)
    if problem is None:
        assert (shape, problems) == ((8, 8), [])
    else:
        assert len(problems) == 1
        assert problem in problems[0]


def test_illum_files_are_checked_for_existence_only(tmp_path: Path) -> None:
    def add_illum(table: pd.DataFrame) -> pd.DataFrame:
        for ch in ("DNA", "ER", "RNA", "AGP", "Mito"):
            np.save(tmp_path / f"P1_Illum{ch}.npy", np.ones((8, 8)))
            table[f"FileName_Illum{ch}"] = f"P1_Illum{ch}.npy"
            table[f"PathName_Illum{ch}"] = str(tmp_path)
        return table

    load_data = edit_csv(write_load_data(tmp_path / "P1"), add_illum)
    meta = write_metadata(tmp_path / "wells.csv", [("P1", "A01", "negcon")])
    assert preflight(["P1"], [load_data], meta) == []
    (tmp_path / "P1_IllumER.npy").unlink()
    findings = preflight(["P1"], [load_data], meta)
    assert [(f.row, f.key) for f in findings] == [(2, "FileName_IllumER"), (3, "FileName_IllumER")]
    assert all("illum file" in f.problem and "does not exist" in f.problem for f in findings)
