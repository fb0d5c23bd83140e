"""Preflight: check every input of a run, image headers included, before any job reads them.

:func:`preflight` collects every problem it finds instead of stopping at the first: each file
that the readers of :mod:`paintssl.inputs` refuse becomes one :class:`Finding` and the check
goes on with the other files. Images are checked from their headers only (size, TIFF
structure, shape, samples per pixel, dtype); no pixel data is read. A finding's
``file, row, key`` name the cell of a user-edited table at fault: for an image, the line and
``FileName_Orig<Ch>`` column of the plate's ``load_data.csv`` that lists it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Literal

import pandas as pd

from paintssl.inputs import (
    InputError,
    file_columns,
    parse_load_data,
    read_metadata,
    read_plate_sheet,
    user_column,
)
from paintssl.preprocess.images import (
    MISSING,
    BadSitePolicy,
    image_fix,
    image_problems,
    imap_bounded,
    usual_shape,
)
from paintssl.tables import (
    CHANNELS,
    GENE_FAMILY,
    MAX_FAMILY,
    MIN_FAMILY,
    PLATE,
    SITE,
    WELL,
    family_sizes,
    usable_families,
    write_tsv,
)

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
FIRST_ROW = re.compile(r"\b(?:line|row)\(s\) (\d+)")
KEY = re.compile(r"\b(?:Metadata|FileName|PathName)_\w+|(?<=\bcolumn )\w+")


@dataclass(frozen=True)
class Finding:
    """One problem with the inputs.

    Attributes
    ----------
    severity
        ``error`` stops the run; ``warning`` is reported and the run goes on.
    file
        The table (plates sheet, ``load_data.csv``, metadata) that holds the faulty entry.
    row
        Its line (text files, header = line 1) or row (Parquet), when one entry is at fault.
    key
        The column or the key values of the entry (e.g. ``FileName_OrigDNA``).
    problem, fix
        What is wrong (naming the image file, for an image) and what to do about it.
    """

    severity: Severity
    file: str
    row: int | None
    key: str
    problem: str
    fix: str

    def __str__(self) -> str:
        where = self.file + (f" line {self.row}" if self.row is not None else "")
        where += f" [{self.key}]" if self.key else ""
        return f"{self.severity.upper()} {where}: {self.problem}. Fix: {self.fix}"


COLUMNS = tuple(f.name for f in fields(Finding))


class PreflightError(InputError):
    """The preflight found errors; the message lists every one of them."""


def from_input_error(err: InputError, file: str | Path) -> Finding:
    """Turn a reader's :class:`InputError` ("<file>: <problem>; <fix>") into an error finding."""
    text = str(err).removeprefix(f"{Path(file)}: ")
    problem, _, fix = text.partition("; ")
    row = FIRST_ROW.search(text)
    key = KEY.search(problem)
    return Finding(
        "error",
        str(file),
        int(row.group(1)) if row else None,
        key.group(0) if key else "",
        problem.rstrip("."),
        fix or "correct the file and run `snakemake validate` again",
    )


def _check_file(item: tuple[str, str]) -> tuple[tuple[int, ...] | None, list[str]]:
    """:func:`image_problems` of one (path, column): headers of ``path_*`` images only."""
    path, column = item
    return image_problems(path, header=column.startswith("path_"))


def _image_findings(
    table: pd.DataFrame, load_data: Path, threads: int, on_bad_site: BadSitePolicy
) -> list[Finding]:
    """Header checks of every file of one parsed plate, plus shape consistency in the plate.

    With ``on_bad_site`` skip, the problems of raw images are warnings: preprocessing leaves
    those sites out (illum files stay errors).
    """
    cells = [(i, col) for i in table.index for col in file_columns(table)]
    checked = imap_bounded(_check_file, [(table.at[i, col], col) for i, col in cells], threads)
    findings, shapes = [], {}
    image_severity: Severity = "warning" if on_bad_site == "skip" else "error"
    left_out = "; until then preprocessing leaves the site out (qc.on_bad_site: skip)"
    note = left_out if on_bad_site == "skip" else ""

    def add(i: int, key: str, problem: str, fix: str, raw: bool) -> None:
        severity: Severity = image_severity if raw else "error"
        fix += note if raw else ""
        findings.append(Finding(severity, str(load_data), i + 2, key, problem, fix))

    for (i, col), (shape, problems) in zip(cells, checked, strict=True):
        image = Path(table.at[i, col])
        kind, key = col.split("_", 1)[0], user_column(col)
        what = "image" if kind == "path" else "illum file"
        where = f"{what} {image} (well {table.at[i, WELL]}, site {table.at[i, SITE]})"
        for problem in problems:
            if kind == "path":
                fix = image_fix(problem)
            elif problem == MISSING:
                fix = f"fix the PathName_*/{key} columns or restore the file"
            else:
                fix = "replace it with the plate's illum .npy file"
            add(i, key, f"{where} {problem}", fix, kind == "path")
        if shape is not None and kind == "path":
            shapes[i, col, key, where] = shape
    usual = usual_shape(shapes.values())
    if usual is not None:
        (height, width), n = usual
        for (i, _, key, where), shape in shapes.items():
            if shape != usual[0]:
                problem = (
                    f"{where} has shape {shape}; {n} other images of the plate have {usual[0]}"
                )
                add(i, key, problem, f"crop or re-export it at {height} x {width} pixels", True)
    return findings


def _check_plate(
    plate: str, load_data: Path, channels: Sequence[str], threads: int, on_bad_site: BadSitePolicy
) -> tuple[pd.DataFrame | None, list[Finding]]:
    """Parse one plate's load_data (None when refused) and check every file it lists."""
    try:
        table = parse_load_data(load_data, channels)
    except InputError as err:
        return None, [from_input_error(err, load_data)]
    findings = _image_findings(table, load_data, threads, on_bad_site)
    named = table[PLATE].iloc[0]
    if named != plate:
        findings.append(
            Finding(
                "error",
                str(load_data),
                2,
                PLATE,
                f"names plate {named!r}, but the plates sheet lists this file for plate {plate!r}",
                f"set {PLATE} to {plate} or rename the plate in the plates sheet",
            )
        )
        return None, findings
    return table, findings


def _well_findings(
    plates: dict[str, pd.DataFrame], metadata: pd.DataFrame, path: Path, load_data: dict
) -> list[Finding]:
    """Imaged wells without metadata (errors: profiles need them) and the reverse (warnings)."""
    findings = []
    for plate, table in plates.items():
        annotated = set(metadata.loc[metadata[PLATE] == plate, WELL])
        imaged = table.drop_duplicates(WELL)
        for i, well in imaged.loc[~imaged[WELL].isin(annotated), WELL].items():
            problem = f"well {well} of plate {plate} has images but no row in the metadata {path}"
            fix = "add the well to the metadata table (profiles need every imaged well)"
            key = f"{WELL}={well}"
            findings.append(Finding("error", str(load_data[plate]), i + 2, key, problem, fix))
        for well in sorted(annotated - set(table[WELL])):
            findings.append(
                Finding(
                    "warning",
                    str(path),
                    None,
                    f"{PLATE}={plate}, {WELL}={well}",
                    f"well has no images in {load_data[plate]}; it is left out of the profiles",
                    "add its sites to load_data.csv if the well was imaged, else nothing to do",
                )
            )
    return findings


def _family_findings(wells: pd.DataFrame, path: Path) -> list[Finding]:
    """Warn when ``Metadata_gene_family`` is filled in but no family can be scored."""
    largest = family_sizes(wells)
    if largest.empty or usable_families(wells):
        return []
    problem = (
        f"no gene family has {MIN_FAMILY}-{MAX_FAMILY} perturbations (largest: "
        f"{largest.index[0]} with {largest.iloc[0]}), so the gene-family AMI will be NaN"
    )
    fix = (
        f"group the genes into families of {MIN_FAMILY}-{MAX_FAMILY}, or delete the "
        f"{GENE_FAMILY} column"
    )
    return [Finding("warning", str(path), None, GENE_FAMILY, problem, fix)]


def preflight(
    plates: Sequence[str],
    load_data: Sequence[str | Path],
    metadata: str | Path,
    channels: Sequence[str] = CHANNELS,
    threads: int = 1,
    on_bad_site: BadSitePolicy = "error",
) -> list[Finding]:
    """Check every plate's ``load_data.csv``, every image header and the well metadata.

    Parameters
    ----------
    plates, load_data
        Plate names of the plates sheet and their ``load_data.csv`` paths, in the same order.
    metadata
        The well metadata table (CSV, TSV or Parquet).
    channels
        The configured channels; every one must be listed for every site.
    threads
        Image headers read in parallel.
    on_bad_site
        ``qc.on_bad_site``: with ``skip``, problems of raw images are warnings.

    Returns
    -------
    list of Finding
        Every problem found, in the order: plates, metadata, gene families, wells.
    """
    paths = {plate: Path(p) for plate, p in zip(plates, load_data, strict=True)}
    findings, tables = [], {}
    for plate, path in paths.items():
        table, found = _check_plate(plate, path, channels, threads, on_bad_site)
        findings += found
        if table is not None:
            tables[plate] = table
    try:
        wells = read_metadata(metadata, list(plates))
    except InputError as err:
        return [*findings, from_input_error(err, metadata)]
    families = _family_findings(wells, Path(metadata))
    return findings + families + _well_findings(tables, wells, Path(metadata), paths)


def preflight_sheet(
    sheet: str | Path,
    metadata: str | Path,
    channels: Sequence[str] = CHANNELS,
    threads: int = 1,
    on_bad_site: BadSitePolicy = "error",
) -> list[Finding]:
    """:func:`preflight` of the plates listed in a plates sheet (one finding if it is refused)."""
    try:
        table = read_plate_sheet(sheet)
    except InputError as err:
        return [from_input_error(err, sheet)]
    return preflight(table["plate"], table["load_data"], metadata, channels, threads, on_bad_site)


def findings_table(findings: Sequence[Finding]) -> pd.DataFrame:
    """One row per finding, columns :data:`COLUMNS` (``row`` as a nullable integer)."""
    table = pd.DataFrame([astuple(f) for f in findings], columns=list(COLUMNS), dtype=object)
    return table.astype({"row": "Int64"})


def report(findings: Sequence[Finding], out: str | Path) -> None:
    """Write ``out`` (TSV, header only when clean) and log a summary and every finding.

    Raises
    ------
    PreflightError
        After writing and logging, when any finding is an error; the message lists them all.
    """
    write_tsv(findings_table(findings), out)
    errors = [f for f in findings if f.severity == "error"]
    log.info("preflight: %d error(s), %d warning(s)", len(errors), len(findings) - len(errors))
    for file, counts in _per_file(findings).items():
        log.info("  %s: %d error(s), %d warning(s)", file, counts["error"], counts["warning"])
    for finding in findings:
        log.log(logging.ERROR if finding.severity == "error" else logging.WARNING, "%s", finding)
    if errors:
        listed = "\n".join(f"- {f}" for f in errors)
        raise PreflightError(
            f"preflight found {len(errors)} error(s) in the inputs (also in the job log):\n{listed}"
        )


def _per_file(findings: Sequence[Finding]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for f in findings:
        counts.setdefault(f.file, Counter())[f.severity] += 1
    return counts


def run_preflight(
    plates: Sequence[str],
    load_data: Sequence[str | Path],
    metadata: str | Path,
    out: str | Path,
    channels: Sequence[str] = CHANNELS,
    threads: int = 1,
    on_bad_site: BadSitePolicy = "error",
) -> list[Finding]:
    """:func:`preflight`, then :func:`report` to ``out`` (raises on errors); the findings."""
    findings = preflight(plates, load_data, metadata, channels, threads, on_bad_site)
    report(findings, out)
    return findings
