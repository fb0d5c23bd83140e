"""The catalogue of bad user inputs: one row per kind, each a test of the message and the cleanup.

Every row builds one bad input in ``tmp_path`` and the stage call that meets it. The error must
name the file, row or key (``names``), say what is wrong (``problem``) and how to fix it
(``fix``), and leave no output behind (``outputs`` and any ``*.tmp`` file). The preflight rows
below check the same image problems from their headers, as errors or, with
``qc.on_bad_site: skip``, as warnings; then both policies of the preprocessing stage.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from paintssl.embed.shard import embed_shard
from paintssl.embed.tiles import EmbedConfig
from paintssl.external import import_external_profiles
from paintssl.inputs import InputError, check_config_keys, read_metadata, validate_metadata
from paintssl.preflight import preflight
from paintssl.preprocess.plate import SKIPPED_COLUMNS, PreprocessConfig, preprocess_plate
from paintssl.pretrain.objectives import build_objective
from paintssl.pretrain.trainer import TrainConfig
from paintssl.profiles.normalize import ProfileConfig, normalize_profiles
from paintssl.tables import CHANNELS, PERTURBATION

from .test_embed import tiny_weights
from .test_external import metadata_for, plate_table
from .test_inputs import edit_csv
from .test_preflight import write_metadata
from .test_profiles import planted_wells

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SIZE = 16
SITES = (("A01", "1"), ("A01", "2"), ("A02", "1"), ("A02", "2"))
"""The test plate; the broken site is A01/2, line 3 of its load_data.csv."""
Built = tuple[Callable[[], object], list[Path], list[str]]
"""What a case builds: the failing call, outputs that must not exist, text the error names."""


def write_plate(root: Path, sites: tuple[tuple[str, str], ...] = SITES) -> Path:
    """Per-channel uint16 TIFFs (random, never black) and the plate's load_data.csv."""
    rng = np.random.default_rng(0)
    (root / "raw").mkdir(parents=True)
    rows = []
    for well, site in sites:
        row = {"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Site": site}
        for ch in CHANNELS:
            name = f"{well}_{site}_{ch}.tiff"
            tifffile.imwrite(root / "raw" / name, rng.integers(1, 4000, (SIZE, SIZE), np.uint16))
            row |= {f"FileName_Orig{ch}": name, f"PathName_Orig{ch}": "raw"}
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "load_data.csv", index=False)
    return root / "load_data.csv"


def bad_site(root: Path, channel: str = "ER") -> Path:
    return root / "raw" / f"A01_2_{channel}.tiff"


def every_channel(path: Path, write: Callable[[Path], None]) -> None:
    for ch in CHANNELS:
        write(path.with_name(path.name.replace("_ER.", f"_{ch}.")))


BREAKS: dict[str, Callable[[Path], None]] = {
    "file_not_found": lambda p: p.unlink(),
    "truncated_tiff": lambda p: p.write_bytes(p.read_bytes()[:-20]),
    "zero_byte_file": lambda p: p.write_bytes(b""),
    "rgb_image": lambda p: tifffile.imwrite(
        p, np.ones((SIZE, SIZE, 3), np.uint16), photometric="rgb"
    ),
    "float_image": lambda p: tifffile.imwrite(p, np.ones((SIZE, SIZE), np.float32)),
    "wrong_size_in_plate": lambda p: every_channel(
        p, lambda q: tifffile.imwrite(q, np.ones((SIZE + 8, SIZE + 8), np.uint16))
    ),
    "all_black_site": lambda p: every_channel(
        p, lambda q: tifffile.imwrite(q, np.zeros((SIZE, SIZE), np.uint16))
    ),
}
"""Ways to break site A01/2 (its ER image, or all its channels)."""


def outputs(tmp: Path) -> tuple[Path, Path, Path]:
    out = tmp / "results/images/P1"
    return out / "manifest.parquet", out / "sites", out / "skipped_sites.tsv"


def preprocess(tmp: Path, load_data: Path, on_bad_site: str = "error") -> None:
    manifest, sites, skipped = outputs(tmp)
    preprocess_plate(load_data, "S1", "B1", manifest, sites, PreprocessConfig(),
                     on_bad_site=on_bad_site, out_skipped=skipped)  # fmt: skip


def broken_plate(kind: str) -> Callable[[Path], Built]:
    def build(tmp: Path) -> Built:
        load_data = write_plate(tmp / "in")
        BREAKS[kind](bad_site(tmp / "in"))
        return lambda: preprocess(tmp, load_data), list(outputs(tmp)), ["A01_2_"]

    return build


def edited_load_data(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], Built]:
    def build(tmp: Path) -> Built:
        load_data = edit_csv(write_plate(tmp / "in"), edit)
        return lambda: preprocess(tmp, load_data), list(outputs(tmp)), [str(load_data)]

    return build


def renamed_dna(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns=lambda c: c.replace("OrigDNA", "OrigHoechst"))


def unknown_config_key(tmp: Path) -> Built:
    config = {"plates": None, "preprocess": {"ilum": "compute"}}
    return lambda: check_config_keys(config, SCHEMA), [], ["'preprocess.ilum'"]


def method_param_typo(tmp: Path) -> Built:
    params = {"teacher_tmp": 0.04}
    return lambda: build_objective("dino", torch.nn.Identity(), params), [], ["'teacher_tmp'"]


def train_key_typo(tmp: Path) -> Built:
    return lambda: TrainConfig.from_dict({"warmup_epoch": 3}), [], ["'warmup_epoch'"]


def manifest_for_embedding(tmp: Path) -> Path:
    row = {"Metadata_Plate": "P1", "path": "sites/A01_1.tiff", "channels": ",".join(CHANNELS)}
    pd.DataFrame([row]).to_parquet(tmp / "manifest.parquet")
    return tmp / "manifest.parquet"


def channel_not_in_checkpoint(tmp: Path) -> Built:
    manifest = manifest_for_embedding(tmp)
    weights = tiny_weights(tmp / "weights.pt", ["DNA", "RNA", "ER", "AGP", "Mito"])
    out = tmp / "shard-000.parquet"
    return lambda: embed_shard(manifest, weights, out, 0, EmbedConfig()), [out], [str(manifest)]


def weights_file(content: Callable[[Path], None]) -> Callable[[Path], Built]:
    def build(tmp: Path) -> Built:
        manifest, weights, out = manifest_for_embedding(tmp), tmp / "weights.pt", tmp / "o.parquet"
        content(weights)
        return lambda: embed_shard(manifest, weights, out, 0, EmbedConfig()), [out], [str(weights)]

    return build


def wells(rows: list[tuple[str, str, str]]) -> Callable[[Path], Built]:
    def build(tmp: Path) -> Built:
        meta, out = write_metadata(tmp / "wells.csv", rows), tmp / "metadata.parquet"
        return lambda: validate_metadata(meta, ["P1", "P2"], out), [out], [str(meta)]

    return build


def nonfinite_features(tmp: Path) -> Built:
    table = planted_wells(n_plates=2)
    table.loc[3, "emb_0002"] = np.inf
    meta = [c for c in table.columns if c.startswith("Metadata_")]
    table.drop(columns=meta[4:]).to_parquet(tmp / "P.parquet")
    table[meta].to_parquet(tmp / "meta.parquet")
    out = tmp / "well.parquet"
    call = lambda: normalize_profiles(  # noqa: E731
        [tmp / "P.parquet"], tmp / "meta.parquet", out, ProfileConfig(), ["variance"]
    )
    return call, [out], ["'emb_0002'"]


def external_missing_keys(tmp: Path) -> Built:
    table = plate_table()
    path = tmp / "profiles.csv"
    table.drop(columns="Metadata_Well").to_csv(path, index=False)
    metadata_for(table).to_parquet(tmp / "metadata.parquet")
    plates = [{"plate": p, "source": "S", "batch": "B"} for p in ("P1", "P2")]
    outs = [tmp / "P1.parquet", tmp / "P2.parquet"]
    call = lambda: import_external_profiles(path, tmp / "metadata.parquet", plates, outs)  # noqa: E731
    return call, outs, [str(path), "Metadata_Well"]


@dataclass(frozen=True)
class Case:
    """One kind of bad input: how to build it, the error, and what its message must say."""

    id: str
    build: Callable[[Path], Built]
    error: type[Exception]
    problem: str
    fix: str


SITE_FIX = r"replace them, or remove these sites from the load_data\.csv, or set qc\.on_bad_site"
CASES = [
    Case("unknown_config_key", unknown_config_key, InputError,
         r"unknown key\(s\): 'preprocess\.ilum' \(did you mean 'illum'\?\); valid there: "
         r"clip_percentiles, illum", r"Fix the spelling or delete the key"),
    Case("model_hyperparameter_typo", method_param_typo, TypeError,
         r"unknown method_params \['teacher_tmp'\] for method 'dino'; valid: .*'teacher_temp'",
         r"Fix the spelling or delete them"),
    Case("train_key_typo", train_key_typo, TypeError, r"unknown train keys \['warmup_epoch'\]",
         r"Fix the spelling or delete them"),
    Case("missing_load_data_column",
         edited_load_data(lambda t: t.drop(columns="Metadata_Site")), InputError,
         r"missing column\(s\) Metadata_Site", r"Add or rename the columns"),
    Case("unknown_channel_name", edited_load_data(renamed_dna), InputError,
         r"missing column\(s\) FileName_OrigDNA, PathName_OrigDNA.*not expected: Hoechst",
         r"Rename the columns, e\.g\. FileName_OrigHoechst -> FileName_OrigDNA"),
    Case("channel_not_in_checkpoint", channel_not_in_checkpoint, ValueError,
         r"images have channels \['DNA,ER,RNA,AGP,Mito'\] but the model was trained on "
         r"'DNA,RNA,ER,AGP,Mito'", r"preprocess with the same `channels`"),
    Case("file_not_found", broken_plate("file_not_found"), InputError,
         r"1 listed image file\(s\) do not exist, e\.g\. line 3 FileName_OrigER: .*A01_2_ER",
         r"Fix the PathName_\*/FileName_\* columns"),
    Case("truncated_tiff", broken_plate("truncated_tiff"), InputError,
         r"A01_2_ER\.tiff: cannot read image, it is truncated: its image data ends at byte",
         SITE_FIX),
    Case("zero_byte_file", broken_plate("zero_byte_file"), InputError,
         r"A01_2_ER\.tiff: cannot read image, it is empty \(0 bytes\); re-export it", SITE_FIX),
    Case("wrong_image_size_in_plate", broken_plate("wrong_size_in_plate"), InputError,
         r"A01_2_DNA\.tiff \(and its other channels\): shape \(24, 24\) differs from the "
         r"plate's usual \(16, 16\) \(3 sites\)", SITE_FIX),
    Case("rgb_image", broken_plate("rgb_image"), InputError,
         r"A01_2_ER\.tiff: cannot read image, it has 3 samples per pixel \(RGB",
         r"re-export it as a single-plane greyscale uint16"),
    Case("float_image", broken_plate("float_image"), InputError,
         r"A01_2_ER\.tiff: cannot read image, it has float pixel type float32",
         r"convert it to 16-bit greyscale \(uint16, 0-65535\)"),
    Case("all_black_site", broken_plate("all_black_site"), InputError,
         r"A01_2_DNA\.tiff: image is all black \(every pixel is 0\)",
         r"re-export the site's image or remove the site from load_data\.csv"),
    Case("empty_plate", edited_load_data(lambda t: t.iloc[:0]), InputError,
         r"has a header but no rows", r"add one row per entry"),
    Case("id_with_shell_characters_as_filename_part",
         edited_load_data(lambda t: t.assign(Metadata_Well=["A 01;rm", "A01", "A02", "A02"])),
         InputError, r"column Metadata_Well has invalid value\(s\) 'A 01;rm' on line\(s\) 2",
         r"use only letters, digits, '_' and '-'"),
    Case("plate_without_negative_controls",
         wells([("P1", "A01", "negcon"), ("P2", "A01", "trt")]), InputError,
         r"plate\(s\) P2 have no negcon well", r"mark the negative control .* negcon"),
    Case("duplicate_well_rows",
         wells([("P1", "A01", "negcon"), ("P1", "A01", "trt"), ("P2", "A01", "negcon")]),
         InputError, r"duplicate \(Metadata_Plate, Metadata_Well\) = \('P1', 'A01'\) and others "
         r"on line\(s\) 2, 3", r"delete the repeated rows"),
    Case("checkpoint_not_a_weights_file", weights_file(lambda p: p.write_bytes(b"not torch")),
         ValueError, r"not a loadable paintssl weights file",
         r"use the weights\.pt that the pretrain rule exported"),
    Case("checkpoint_is_a_raw_state_dict",
         weights_file(lambda p: torch.save({"w": torch.zeros(1)}, p)), ValueError,
         r"not a paintssl weights file, it lacks the keys \['backbone'",
         r"use the weights\.pt that the pretrain rule exported"),
    Case("nonfinite_features_after_post_processing", nonfinite_features, ValueError,
         r"1 features are non-finite after the profile chain variance",
         r"add the step drop_nonfinite to the model's profile_steps"),
    Case("external_profiles_missing_keys", external_missing_keys, InputError,
         r"missing column\(s\) Metadata_Well; its Metadata_\* columns are",
         r"Rename the plate and well columns .* or add them"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_named_with_its_fix_and_leaves_nothing(case: Case, tmp_path: Path) -> None:
    call, outs, names = case.build(tmp_path)
    with pytest.raises(case.error) as err:
        call()
    message = str(err.value)
    for name in names:
        assert name in message
    assert re.search(case.problem, message), message
    assert re.search(case.fix, message), message
    assert [p for p in outs if p.exists()] == []
    assert list(tmp_path.rglob("*.tmp")) == []


PREFLIGHT = {
    "file_not_found": (r"A01_2_ER\.tiff \(well A01, site 2\) does not exist",
                       r"fix its PathName_\*/FileName_\* cells in load_data\.csv"),
    "truncated_tiff": (r"is truncated", r"re-export it as a single-plane greyscale uint16"),
    "zero_byte_file": (r"is empty \(0 bytes\)", r"re-export it"),
    "rgb_image": (r"has 3 samples per pixel", r"single-plane greyscale"),
    "float_image": (r"has float pixel type float32", r"convert it to 16-bit greyscale"),
    "wrong_size_in_plate": (r"has shape \(24, 24\); 15 other images of the plate have \(16, 16\)",
                            r"crop or re-export it at 16 x 16 pixels"),
}  # fmt: skip
"""Image problems the preflight sees in the headers (an all-black site needs the pixels)."""


@pytest.mark.parametrize("on_bad_site", ["error", "skip"])
@pytest.mark.parametrize("kind", PREFLIGHT)
def test_preflight_finds_image_problems_as_errors_or_skip_warnings(
    kind: str, on_bad_site: str, tmp_path: Path
) -> None:
    load_data = write_plate(tmp_path / "in")
    BREAKS[kind](bad_site(tmp_path / "in"))
    meta = write_metadata(tmp_path / "wells.csv", [("P1", "A01", "negcon"), ("P1", "A02", "trt")])
    findings = preflight(["P1"], [load_data], meta, on_bad_site=on_bad_site)
    problem, fix = PREFLIGHT[kind]
    assert findings
    for finding in findings:
        assert finding.severity == {"error": "error", "skip": "warning"}[on_bad_site]
        assert (finding.file, finding.row) == (str(load_data), 3)
        assert re.search(problem, finding.problem), finding
        assert re.search(fix, finding.fix), finding
        assert ("leaves the site out" in finding.fix) == (on_bad_site == "skip")
    assert "FileName_OrigER" in {f.key for f in findings}


def test_gene_family_column_without_usable_families_is_a_preflight_warning(
    tmp_path: Path,
) -> None:
    load_data = write_plate(tmp_path / "in")
    meta = tmp_path / "wells.csv"
    write_metadata(meta, [("P1", "A01", "negcon"), ("P1", "A02", "trt")])
    edit_csv(meta, lambda t: t.assign(Metadata_gene_family=["", "KINASE"]))
    [finding] = preflight(["P1"], [load_data], meta)
    assert (finding.severity, finding.file, finding.key) == ("warning", str(meta),
                                                             "Metadata_gene_family")  # fmt: skip
    assert "no gene family has 4-10 perturbations (largest: KINASE with 1)" in finding.problem
    assert "delete the Metadata_gene_family column" in finding.fix


def test_perturbation_ids_with_spaces_and_shell_characters_are_kept_verbatim(
    tmp_path: Path,
) -> None:
    """They are never a wildcard, a file name or a shell word (scripts use ``script:``)."""
    odd = "JCP 2022; $(rm -rf ~) 'x'|y"
    meta = write_metadata(tmp_path / "wells.csv", [("P1", "A01", "negcon")])
    edit_csv(meta, lambda t: t.assign(Metadata_JCP2022=[odd]))
    validate_metadata(meta, ["P1"], tmp_path / "metadata.parquet")
    assert pd.read_parquet(tmp_path / "metadata.parquet")[PERTURBATION].tolist() == [odd]
    assert read_metadata(meta, ["P1"])[PERTURBATION].tolist() == [odd]


SKIPPED_PROBLEMS = {
    "file_not_found": "does not exist",
    "truncated_tiff": "is truncated",
    "zero_byte_file": "is empty",
    "rgb_image": "3 samples per pixel",
    "float_image": "float pixel type",
    "wrong_size_in_plate": "differs from the plate's usual",
    "all_black_site": "all black",
}


def test_skip_leaves_unusable_sites_out_lists_each_and_logs_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sites = tuple((f"B{i:02d}", "1") for i in range(1, 8))
    load_data = write_plate(tmp_path / "in", (*SITES, *sites))
    for kind, well in zip(BREAKS, (s[0] for s in sites), strict=True):
        BREAKS[kind](tmp_path / "in/raw" / f"{well}_1_ER.tiff")
    caplog.set_level(logging.INFO)
    preprocess(tmp_path, load_data, on_bad_site="skip")
    manifest, _, skipped = outputs(tmp_path)
    assert pd.read_parquet(manifest)["Metadata_Well"].tolist() == ["A01", "A01", "A02", "A02"]
    table = pd.read_csv(skipped, sep="\t", dtype=str)
    assert list(table.columns) == list(SKIPPED_COLUMNS)
    assert table["Metadata_Well"].tolist() == [s[0] for s in sites]
    assert table["load_data_line"].tolist() == [str(n) for n in range(6, 13)]
    for problem, kind in zip(table["problems"], BREAKS, strict=True):
        assert re.search(SKIPPED_PROBLEMS[kind], problem), problem
    assert f"{load_data}: skipped 7 of 11 sites (qc.on_bad_site: skip)" in caplog.text
    assert "skipped line 8: " in caplog.text


def test_skip_without_any_usable_site_fails_and_leaves_nothing(tmp_path: Path) -> None:
    load_data = write_plate(tmp_path / "in", SITES[:1])
    (tmp_path / "in/raw/A01_1_DNA.tiff").write_bytes(b"")
    with pytest.raises(InputError, match=r"none of its 1 sites can be used .* fix the images"):
        preprocess(tmp_path, load_data, on_bad_site="skip")
    assert [p for p in outputs(tmp_path) if p.exists()] == []


def test_error_policy_writes_a_header_only_skipped_table_for_a_clean_plate(tmp_path: Path) -> None:
    preprocess(tmp_path, write_plate(tmp_path / "in"))
    assert outputs(tmp_path)[2].read_text() == "\t".join(SKIPPED_COLUMNS) + "\n"
