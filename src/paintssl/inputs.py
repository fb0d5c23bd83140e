"""Read and validate the user's inputs: plates sheet, ``load_data.csv``, well metadata, config keys.

Every problem raises :class:`InputError` with a message that names the file, the line or
column at fault and how to fix it. Line numbers count the header as line 1.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import yaml

from paintssl.tables import (
    CELL_LINE,
    CHANNELS,
    GENE,
    GENE_FAMILY,
    LOAD_DATA_KEYS,
    PERT_TYPE,
    PERTURBATION,
    PLATE,
    SITE,
    TARGET,
    WELL,
    write_parquet,
)

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
SPLITS = ("train", "eval")
PERT_TYPES = ("trt", "negcon", "poscon")
SHEET_COLUMNS = ("plate", "batch", "source", "load_data")
METADATA_REQUIRED = (PLATE, WELL, PERTURBATION, PERT_TYPE)
METADATA_OPTIONAL = (
    TARGET,
    GENE,
    GENE_FAMILY,
    CELL_LINE,
)
MAX_LISTED = 5
PARQUET_SUFFIXES = (".parquet", ".pq")
ORIG_COLUMN = re.compile(r"^(?:FileName|PathName)_Orig(.+)$")


class InputError(ValueError):
    """Bad user input; the message names the file, row/column and the fix."""


def listed(values: Sequence[object]) -> str:
    """Name at most ``MAX_LISTED`` values, then how many more."""
    shown = ", ".join(map(str, values[:MAX_LISTED]))
    return shown + (f" and {len(values) - MAX_LISTED} more" if len(values) > MAX_LISTED else "")


def row_names(index: pd.Index | Sequence[int], path: Path) -> str:
    """Name 0-based data rows: text-file line numbers (header = line 1) or Parquet rows."""
    parquet = path.suffix in PARQUET_SUFFIXES
    numbers = [int(i) + (1 if parquet else 2) for i in index]
    return f"{'row' if parquet else 'line'}(s) {listed(numbers)}"


def _read_csv(path: Path, sep: str = ",") -> pd.DataFrame:
    """Read a text table with every column as str ('' for empty cells)."""
    if not path.is_file():
        raise InputError(
            f"{path}: file not found; check the path (relative paths are resolved against "
            f"the folder of the file that lists it)"
        )
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty; it needs a header line and rows") from None
    if table.empty:
        raise InputError(f"{path}: has a header but no rows; add one row per entry")
    return table.apply(lambda col: col.str.strip())


def _require_columns(table: pd.DataFrame, required: Sequence[str], path: Path) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; the file has "
            f"{', '.join(map(str, table.columns))}. Add or rename the columns."
        )


def _require_values(table: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    for col in columns:
        empty = table.index[table[col].isna() | (table[col].astype(str) == "")]
        if len(empty):
            raise InputError(
                f"{path}: column {col} is empty on {row_names(empty, path)}; fill it in"
            )


def _require_names(table: pd.DataFrame, column: str, path: Path) -> None:
    bad = table.index[~table[column].str.fullmatch(NAME_PATTERN.pattern)]
    if len(bad):
        values = ", ".join(repr(v) for v in table.loc[bad[:MAX_LISTED], column])
        raise InputError(
            f"{path}: column {column} has invalid value(s) {values} on {row_names(bad, path)}; "
            f"use only letters, digits, '_' and '-'"
        )


def require_unique(table: pd.DataFrame, keys: Sequence[str], path: Path) -> None:
    """Raise :class:`InputError` naming the rows where a combination of ``keys`` repeats."""
    dup = table.index[table.duplicated(list(keys), keep=False)]
    if len(dup):
        first = table.loc[dup[0], list(keys)].tolist()
        raise InputError(
            f"{path}: duplicate ({', '.join(keys)}) = {tuple(first)} and others on "
            f"{row_names(dup, path)}; delete the repeated rows (each combination must appear "
            f"once)"
        )


def read_plate_sheet(path: str | Path) -> pd.DataFrame:
    """Read the plates sheet (TSV: plate, batch, source, load_data[, split]).

    Parameters
    ----------
    path
        The sheet. Relative ``load_data`` paths are resolved against its folder.

    Returns
    -------
    pandas.DataFrame
        One row per plate, ``load_data`` as an absolute path string and ``split`` in
        {train, eval} or missing (used for both).
    """
    path = Path(path)
    sheet = _read_csv(path, sep="\t")
    _require_columns(sheet, SHEET_COLUMNS, path)
    _require_values(sheet, SHEET_COLUMNS, path)
    _require_names(sheet, "plate", path)
    require_unique(sheet, ["plate"], path)
    if "split" in sheet.columns:
        bad = sheet.index[~sheet["split"].isin([*SPLITS, ""])]
        if len(bad):
            raise InputError(
                f"{path}: column split has value(s) {sorted(set(sheet.loc[bad, 'split']))} on "
                f"{row_names(bad, path)}; use train, eval, or leave it empty for both"
            )
        sheet["split"] = sheet["split"].replace("", None)
    else:
        sheet["split"] = None
    base = path.resolve().parent
    sheet["load_data"] = [str((base / p).resolve()) for p in sheet["load_data"]]
    return sheet


def _channel_columns(table: pd.DataFrame, channels: Sequence[str], path: Path) -> None:
    """Check that every wanted channel has FileName_Orig<Ch> and PathName_Orig<Ch>."""
    found = sorted({m.group(1) for c in table.columns if (m := ORIG_COLUMN.match(str(c)))})
    needed = [f"{kind}_Orig{ch}" for ch in channels for kind in ("FileName", "PathName")]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        unknown = [ch for ch in found if ch not in channels]
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}. Expected channels "
            f"{', '.join(channels)}; the file has Orig channels {', '.join(found) or 'none'} "
            f"(not expected: {', '.join(unknown) or 'none'}). Rename the columns, e.g. "
            f"FileName_OrigHoechst -> FileName_OrigDNA, or change the configured channels."
        )
    extra = [ch for ch in found if ch not in channels]
    if extra:
        log.info("%s: ignoring Orig channels not configured: %s", path, ", ".join(extra))


def _join_paths(table: pd.DataFrame, kind: str, ch: str, base: Path, path: Path) -> pd.Series:
    """Absolute file paths from PathName_<kind><ch> / FileName_<kind><ch>."""
    names, folders = table[f"FileName_{kind}{ch}"], table[f"PathName_{kind}{ch}"]
    empty = table.index[names == ""]
    if len(empty):
        raise InputError(
            f"{path}: FileName_{kind}{ch} is empty on {row_names(empty, path)}; fill it in"
        )
    remote = table.index[folders.str.contains("://", regex=False)]
    if len(remote):
        raise InputError(
            f"{path}: PathName_{kind}{ch} is a URL ({folders[remote[0]]}) on "
            f"{row_names(remote, path)}; "
            f"download the images and point PathName_* at the local folder"
        )
    return pd.Series(
        [
            str((base / folder / name).resolve())
            for folder, name in zip(folders, names, strict=True)
        ],
        index=table.index,
    )


def _require_files(table: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [
        (i, col, table.at[i, col])
        for col in columns
        for i in table.index
        if not Path(table.at[i, col]).is_file()
    ]
    if missing:
        shown = "; ".join(
            f"line {i + 2} {user_column(col)}: {p}" for i, col, p in missing[:MAX_LISTED]
        )
        raise InputError(
            f"{path}: {len(missing)} listed image file(s) do not exist, e.g. {shown}. Fix the "
            f"PathName_*/FileName_* columns (relative paths are relative to {path.parent})"
        )


def parse_load_data(path: str | Path, channels: Sequence[str] = CHANNELS) -> pd.DataFrame:
    """Read one plate's JUMP ``load_data.csv`` and map its channels by name.

    Parameters
    ----------
    path
        CSV with ``FileName_Orig<Ch>``, ``PathName_Orig<Ch>``, ``Metadata_Plate``,
        ``Metadata_Well``, ``Metadata_Site`` in any column order; optional
        ``FileName_Illum<Ch>``/``PathName_Illum<Ch>``. Path columns are absolute or relative
        to the CSV's folder. Orig channels not in ``channels`` (e.g. Brightfield) are ignored.
    channels
        Channel names, e.g. JUMP's ``DNA, ER, RNA, AGP, Mito``.

    Returns
    -------
    pandas.DataFrame
        ``Metadata_Plate, Metadata_Well, Metadata_Site`` (str) and absolute ``path_<Ch>``
        (plus ``illum_<Ch>`` when the CSV has illum columns), in ``channels`` order, one
        row per CSV line (row ``i`` is line ``i + 2``). The files are not opened.
    """
    path = Path(path)
    table = _read_csv(path)
    _require_columns(table, LOAD_DATA_KEYS, path)
    _channel_columns(table, channels, path)
    _require_values(table, LOAD_DATA_KEYS, path)
    for key in (WELL, SITE):
        _require_names(table, key, path)
    plates = table[PLATE].unique()
    if len(plates) > 1:
        raise InputError(
            f"{path}: holds {len(plates)} plates ({', '.join(plates[:MAX_LISTED])}); "
            f"split it into one load_data.csv per plate"
        )
    require_unique(table, LOAD_DATA_KEYS, path)
    base = path.resolve().parent
    out = table[list(LOAD_DATA_KEYS)].copy()
    for ch in channels:
        out[f"path_{ch}"] = _join_paths(table, "Orig", ch, base, path)
    illum_cols = [f"{kind}_Illum{ch}" for ch in channels for kind in ("FileName", "PathName")]
    present = [c for c in illum_cols if c in table.columns]
    if present and len(present) < len(illum_cols):
        missing = sorted(set(illum_cols) - set(present))
        raise InputError(
            f"{path}: has some illum columns but lacks {', '.join(missing)}; give "
            f"FileName_Illum<Ch>/PathName_Illum<Ch> for every channel or none"
        )
    if present:
        for ch in channels:
            out[f"illum_{ch}"] = _join_paths(table, "Illum", ch, base, path)
    return out.reset_index(drop=True)


def read_load_data(path: str | Path, channels: Sequence[str] = CHANNELS) -> pd.DataFrame:
    """Read one plate's ``load_data.csv`` (:func:`parse_load_data`); every file must exist."""
    table = parse_load_data(path, channels)
    _require_files(table, file_columns(table), Path(path))
    return table


def user_column(column: str) -> str:
    """Name the load_data.csv column behind a ``path_<Ch>``/``illum_<Ch>`` column."""
    kind, channel = column.split("_", 1)
    return f"FileName_{'Orig' if kind == 'path' else 'Illum'}{channel}"


def file_columns(table: pd.DataFrame) -> list[str]:
    """Return the image and illum path columns of a table from :func:`parse_load_data`."""
    return [c for c in table.columns if c.startswith(("path_", "illum_"))]


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: metadata file not found; check the configured path")
    keys = [*METADATA_REQUIRED, *METADATA_OPTIONAL]
    if path.suffix in PARQUET_SUFFIXES:
        table = pd.read_parquet(path)
    else:
        sep = "\t" if ".tsv" in path.suffixes else ","
        table = pd.read_csv(path, dtype=dict.fromkeys(keys, str), sep=sep)
    if table.empty:
        raise InputError(f"{path}: metadata table has no rows; add one row per well")
    for col in keys:
        if col in table.columns:
            table[col] = table[col].astype("str").where(table[col].notna()).str.strip()
    return table.reset_index(drop=True)


def read_metadata(path: str | Path, plates: Sequence[str]) -> pd.DataFrame:
    """Read and validate the well metadata table (CSV, TSV or Parquet).

    Parameters
    ----------
    path
        Table with ``Metadata_Plate, Metadata_Well, Metadata_JCP2022`` and
        ``Metadata_pert_type`` in {trt, negcon, poscon}; optional ``Metadata_target``
        ('|'-separated), ``Metadata_gene``, ``Metadata_gene_family``, ``Metadata_cell_line``.
    plates
        Plates of the run; each must be present and hold at least one negcon well.

    Returns
    -------
    pandas.DataFrame
        The rows of ``plates`` with every optional column present (missing values as NA).
    """
    path = Path(path)
    table = _read_table(path)
    _require_columns(table, METADATA_REQUIRED, path)
    table = table[table[PLATE].isin(list(plates))]
    absent = [p for p in plates if p not in set(table[PLATE])]
    if absent:
        raise InputError(
            f"{path}: no wells for plate(s) {', '.join(absent)}; add their wells to the "
            f"metadata table or remove the plate(s) from the plates sheet"
        )
    _require_values(table, METADATA_REQUIRED, path)
    bad = table.index[~table[PERT_TYPE].isin(PERT_TYPES)]
    if len(bad):
        values = sorted(set(table.loc[bad, PERT_TYPE]))
        raise InputError(
            f"{path}: column Metadata_pert_type has value(s) {values} on {row_names(bad, path)}; "
            f"use one of {', '.join(PERT_TYPES)}"
        )
    require_unique(table, [PLATE, WELL], path)
    has_negcon = set(table.loc[table[PERT_TYPE] == "negcon", PLATE])
    lacking = [p for p in plates if p not in has_negcon]
    if lacking:
        raise InputError(
            f"{path}: plate(s) {', '.join(lacking)} have no negcon well; mark the negative "
            f"control (e.g. DMSO) wells with Metadata_pert_type = negcon"
        )
    for col in METADATA_OPTIONAL:
        if col not in table.columns:
            table[col] = pd.Series(None, index=table.index, dtype="str")
    return table.reset_index(drop=True)


def validate_metadata(path: str | Path, plates: Sequence[str], out: str | Path) -> None:
    """Validate the well metadata table (:func:`read_metadata`) and store it as Parquet."""
    write_parquet(read_metadata(path, plates), out)


def unknown_keys(value: object, schema: Mapping, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Keys of ``value`` that a JSON schema with ``additionalProperties: false`` refuses.

    Returns
    -------
    list of tuple
        ``(dotted key, valid keys at that level)`` for every unknown key, depth first.
    """
    if not isinstance(value, Mapping):
        return []
    known, other = schema.get("properties", {}), schema.get("additionalProperties", True)
    found = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if key in known:
            found += unknown_keys(item, known[key], f"{name}.")
        elif isinstance(other, Mapping):
            found += unknown_keys(item, other, f"{name}.")
        elif other is False:
            found.append((name, sorted(known)))
    return found


def check_config_keys(config: Mapping, schema: str | Path) -> None:
    """Raise :class:`InputError` naming every config key the schema does not know, and the fix."""
    spec = yaml.safe_load(Path(schema).read_text())
    found = unknown_keys(config, spec)
    if found:
        lines = []
        for name, valid in found:
            close = difflib.get_close_matches(name.rsplit(".", 1)[-1], valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"{name!r}{hint}; valid there: {', '.join(valid)}")
        raise InputError(
            f"config: unknown key(s): {' / '.join(lines)}. Fix the spelling or delete the "
            f"key(s); config/README.md lists every key"
        )
