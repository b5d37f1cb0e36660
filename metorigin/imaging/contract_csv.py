"""The CSV files of the cohort contract read as text tables, and the row problems every one of them
can have (a duplicated id).

Kept apart from the contract itself (cohort.py: which files, which columns, what a valid row is)
because the reading is the same for every file: `patients.csv`, `scans.csv`, `qc.csv`, and the
study-fit checks that look at `patients.csv` before a cohort is loaded. A file that cannot be read
as a whole is refused here with the fix a spreadsheet user needs (encoding, delimiter, an unquoted
comma), since pandas' own messages do not name one.
"""

import csv
import io
from pathlib import Path

import pandas as pd

from metorigin.core.errors import CohortError, CohortFileError, DuplicateIdError, InvalidValueError, MissingColumnError
from metorigin.imaging.io import special_file


def read_contract_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> pd.DataFrame:
    """Read a contract CSV as text, with each row's line number kept for error messages."""
    name = path.name
    if path.exists() and not path.is_file():  # a folder, a FIFO (reading it would wait for ever), a device
        raise CohortFileError(
            name,
            f"{path} is not a regular file (it is {special_file(path) or 'a folder'})",
            f"replace it by the CSV file itself, with the columns {', '.join(required)}",
        )
    if not path.is_file():
        raise CohortFileError(
            name, f"the file is missing from {path.parent}", f"create {name} with the columns {', '.join(required)}"
        )
    text = utf8_text(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CohortFileError(
            name,
            f"the file cannot be parsed as CSV ({str(exc).strip()})",
            "save it as comma-separated UTF-8 text with one header line",
        ) from exc
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took a row's extra fields for an index
        _refuse_extra_fields(name, text)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        refuse_other_delimiter(name, text, required)
        raise MissingColumnError(
            name,
            f"required column(s) {', '.join(missing)} missing (found: {', '.join(frame.columns) or 'none'})",
            f"add the column(s) {', '.join(missing)} to the header line",
        )
    present = [c for c in optional if c in frame.columns]
    frame = frame[list(required) + present].apply(lambda col: col.str.strip())
    for column in optional:
        if column not in frame.columns:
            frame[column] = None  # absent column (default applies), unlike an empty cell
    frame.insert(0, "line", _record_lines(text, len(frame)))
    if frame.empty:
        raise CohortFileError(
            name,
            f"no {name.removesuffix('.csv')} to process: the file has a header line and no rows",
            f"add one row per {name.removesuffix('s.csv')} under the header ({', '.join(required)}, ...)",
        )
    return frame.reset_index(drop=True)


def _record_lines(text: str, rows: int) -> list[int]:
    """The line each data row starts on, as an editor numbers them: pandas skips blank lines, and a
    row's line is what an error names (for a forgotten patient's row, all it names)."""
    reader = csv.reader(io.StringIO(text))
    starts = [reader.line_num - sum(cell.count("\n") for cell in row) for row in reader if row]
    if len(starts) - 1 != rows:  # the two parsers disagree: the index, as before
        return list(range(2, rows + 2))
    return starts[1:]


def _refuse_extra_fields(name: str, text: str) -> None:
    """A row with more fields than the header (an unquoted comma in free text) would shift its
    cells into the wrong columns: refused, with the first such line."""
    rows = list(csv.reader(io.StringIO(text)))
    width = len(rows[0])
    for line, row in enumerate(rows[1:], start=2):
        if len(row) > width:
            raise CohortFileError(
                name,
                f"line {line} has {len(row)} fields, the header {width}",
                'put a cell that holds a comma in double quotes ("motion, streak artefacts")',
            )


def utf8_text(path: Path) -> str:
    """The file as text; a byte that is not UTF-8 is reported with its line, since spreadsheets
    often save in a local encoding (a name with an accent in Latin-1 is one byte, 0xE9)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CohortFileError(
            path.name,
            f"line {line} is not UTF-8 text (byte 0x{data[exc.start]:02X} at column {column})",
            "save the file as UTF-8 (Excel: 'CSV UTF-8 (Comma delimited)'; LibreOffice: character set "
            "'Unicode (UTF-8)')",
            row=line,
        ) from None


def refuse_other_delimiter(name: str, text: str, required: tuple[str, ...]) -> None:
    """A header that holds the required columns once split by ';' or a tab: the file uses another
    delimiter (a spreadsheet in a locale whose decimal mark is a comma), so the fix is the
    delimiter, not the columns."""
    header = text.splitlines()[0] if text else ""
    for delimiter, spoken in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
        if all(c in [h.strip() for h in header.split(delimiter)] for c in required):
            raise CohortFileError(
                name,
                f"the columns are separated by {spoken}, not commas",
                "save it as comma-separated values (Excel: 'CSV UTF-8 (Comma delimited)'), with '.' as decimal mark",
                row=1,
            )


MAX_LINES_SHOWN = 10  # a message names at most this many lines of a duplicated id
MAX_CELL = 1_000  # characters in a cell: a stage or a label is a few; a pasted document is refused
MAX_PATH_CELL = 4_096  # characters in a path cell (PATH_MAX on Linux)
PATH_COLUMNS = ("image", "mask")


def shown(value: str, limit: int = 40) -> str:
    """A cell as a message quotes it: a 20 MB cell must not become a 20 MB message."""
    return repr(value if len(value) <= limit else f"{value[:limit]}...")


def duplicate_errors(frame: pd.DataFrame, file: str, id_column: str) -> tuple[set[str], list[CohortError]]:
    """Ids that occur more than once; every one of their rows is rejected, since none can be trusted.
    One error per id, on its first line, naming at most MAX_LINES_SHOWN of its lines: 10,000 copies
    of a row are one message, not 10,000 messages of 10,000 line numbers each."""
    ids = frame[id_column]
    repeated = frame[ids.duplicated(keep=False) & (ids != "")]
    errors: list[CohortError] = []
    for ident, lines in repeated.groupby(id_column, sort=True)["line"]:
        lines = lines.tolist()
        listed = ", ".join(map(str, lines[:MAX_LINES_SHOWN]))
        more = f" and {len(lines) - MAX_LINES_SHOWN} more" if len(lines) > MAX_LINES_SHOWN else ""
        errors.append(
            DuplicateIdError(
                file,
                f"{id_column} {shown(ident)} appears on {len(lines)} lines ({listed}{more}); none of them is used",
                f"give each row its own {id_column}, or delete the extra rows",
                row=lines[0],
                row_id=ident if len(ident) <= 128 else None,  # an id is at most 128 characters (core/ids.py)
            )
        )
    return set(repeated[id_column]), errors


def without_oversized(frame: pd.DataFrame, file: str) -> tuple[pd.DataFrame, list[CohortError]]:
    """The rows without a cell longer than MAX_CELL characters (MAX_PATH_CELL for a path), and an
    error for each such cell: no value of the contract is that long, and every message, log line
    and table would carry it. Those rows are left out whole (their id may be the long cell)."""
    columns = [c for c in frame.columns if c != "line" and frame[c].notna().any()]
    errors: list[CohortError] = []
    for column in columns:
        limit = MAX_PATH_CELL if column in PATH_COLUMNS else MAX_CELL
        for line, value in frame.loc[frame[column].fillna("").str.len() > limit, ["line", column]].itertuples(
            index=False
        ):
            errors.append(
                InvalidValueError(
                    file,
                    f"the {column} cell holds {len(value):,} characters (at most {limit:,}): {shown(value)}",
                    f"shorten the cell; a {column} is never that long",
                    row=line,
                )
            )
    return frame[~frame["line"].isin({e.row for e in errors})], errors
