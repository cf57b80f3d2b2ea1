"""Leads and outcomes from any CSV file, through a column mapping (no code per file).

``import_leads_csv`` turns rows into leads with traits (mapping: leadscore trait key → CSV column,
optionally every other column as a trait too); ``import_outcomes_csv`` turns rows into conversion
labels (lead id column, a yes/no outcome column, an optional date column).

Everything is checked before anything is written: a mapped column the file lacks, an outcome that is
not a yes/no, a date that does not parse, a duplicate or empty lead id all raise ``CsvImportError``
naming the file, the column and the first bad rows; then nothing is stored. Rows are numbered like a
spreadsheet: the header is row 1, the first data row is row 2.

Files as they come: a UTF-8 byte-order mark, CRLF line ends, a trailing comma on every line (an
unnamed, empty last column, dropped) and placeholder values (``missing=["Select"]``) treated as empty.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from leadscore.store.base import Store

YES = frozenset({"1", "1.0", "yes", "y", "true", "t", "won", "win", "converted", "closed won", "closed-won"})
NO = frozenset({"0", "0.0", "no", "n", "false", "f", "lost", "lose", "not converted", "closed lost", "closed-lost"})
MAX_BAD_ROWS = 5


class CsvImportError(ValueError):
    """Bad input: the message names the file, the column and the first bad rows."""


@dataclass
class CsvTable:
    """A CSV file read as text: header names, rows of strings (None for missing), spreadsheet row numbers."""
    name: str
    columns: list[str]
    rows: list[list[str | None]]
    row_numbers: list[int]
    dropped_columns: list[str] = field(default_factory=list)

    def column(self, name: str) -> list[str | None]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def require(self, names: Iterable[tuple[str, str]]) -> None:
        """Each (what, column) must be a column of the file."""
        missing = [(what, col) for what, col in names if col not in self.columns]
        if missing:
            listed = ", ".join(f"'{c}' (for {w})" for w, c in missing)
            raise CsvImportError(f"{self.name}: the mapping names column(s) {listed} that the file does not have; "
                                 f"its columns are: {', '.join(repr(c) for c in self.columns)}")


@dataclass
class LeadsImport:
    rows: int
    traits: dict[str, str]          # trait key → CSV column imported
    dropped_columns: list[str]


@dataclass
class OutcomesImport:
    rows: int
    positives: int
    negatives: int
    unlabelled: int                 # rows with an empty outcome cell (open leads), not stored
    outcome: str
    source: str


def _bad_rows_message(table: CsvTable, column: str, bad: list[tuple[int, str]], what: str) -> str:
    """'Leads.csv: column 'Converted' row 17: 'maybe' is not yes/no; also row 18: 'x' (and 3 more rows)'."""
    (n0, v0), rest = bad[0], bad[1:MAX_BAD_ROWS]
    msg = f"{table.name}: column '{column}' row {n0}: {v0!r} {what}"
    if rest:
        msg += "; also " + ", ".join(f"row {n}: {v!r}" for n, v in rest)
    if len(bad) > MAX_BAD_ROWS:
        msg += f" (and {len(bad) - MAX_BAD_ROWS} more rows)"
    return msg


def read_csv_table(path: str | Path, missing: Sequence[str] = (), delimiter: str = ",",
                   encoding: str = "utf-8-sig") -> CsvTable:
    """Read a CSV file as text. The stdlib csv reader is used rather than pandas because it reports the
    line each record starts on (quoted fields may span lines), which the error messages need, and keeps
    every cell as the exact text (no type guessing before the mapping says what a column is)."""
    path = Path(path)
    name = path.name
    missing_set = {m for m in missing} | {""}
    try:
        text = path.read_bytes().decode(encoding)
    except FileNotFoundError:
        raise CsvImportError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CsvImportError(f"{name}: line {line} is not valid {encoding} text; pass the file's encoding "
                             f"(e.g. --encoding latin-1)") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise CsvImportError(f"{name}: the file is empty (no header row)") from None
    header = [h.strip() for h in header]
    raw: list[list[str]] = []
    numbers: list[int] = []
    start = reader.line_num + 1
    try:
        for record in reader:
            if record and any(cell.strip() for cell in record):
                raw.append(record)
                numbers.append(len(numbers) + 2)  # spreadsheet numbering: header is row 1
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvImportError(f"{name}: line {start}: {exc}") from None
    width = len(header)
    bad_width = [(n, f"{len(r)} fields") for n, r in zip(numbers, raw) if len(r) != width]
    if bad_width:
        shown = "; ".join(f"row {n} has {w}" for n, w in bad_width[:MAX_BAD_ROWS])
        raise CsvImportError(f"{name}: the header has {width} fields but {shown}")
    # An unnamed column with no values (a trailing comma on every line) is dropped; one with values is an error.
    keep, dropped = [], []
    for i, h in enumerate(header):
        if h:
            keep.append(i)
            continue
        filled = [(n, r[i]) for n, r in zip(numbers, raw) if r[i].strip()]
        if filled:
            raise CsvImportError(_bad_rows_message(
                CsvTable(name, header, [], []), f"#{i + 1}", filled,
                "has a value but the column has no name in the header"))
        dropped.append(f"#{i + 1} (unnamed, empty)")
    seen: dict[str, int] = {}
    for i in keep:
        if header[i] in seen:
            raise CsvImportError(f"{name}: column name '{header[i]}' appears twice in the header "
                                 f"(fields {seen[header[i]] + 1} and {i + 1})")
        seen[header[i]] = i
    rows = [[(None if r[i].strip() in missing_set else r[i].strip()) for i in keep] for r in raw]
    return CsvTable(name, [header[i] for i in keep], rows, numbers, dropped)


def slug(column: str) -> str:
    """A CSV header as a trait key: 'Total Time Spent on Website' → 'total_time_spent_on_website'."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", column).strip("_").lower()
    return s or "column"


def _parse_dates(table: CsvTable, column: str) -> list[datetime | None]:
    """Dates in any format pandas recognises (ISO 8601, with or without time and offset), as naive UTC."""
    values = table.column(column)
    series = pd.Series(values, dtype="object")
    parsed = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    bad = [(n, v) for n, v, p in zip(table.row_numbers, values, parsed) if v is not None and pd.isna(p)]
    if bad:
        raise CsvImportError(_bad_rows_message(table, column, bad, "is not a date"))
    return [None if pd.isna(p) else p.tz_convert(None).to_pydatetime() for p in parsed]


def _ids(table: CsvTable, column: str) -> list[str]:
    ids = table.column(column)
    empty = [(n, "") for n, v in zip(table.row_numbers, ids) if v is None]
    if empty:
        raise CsvImportError(_bad_rows_message(table, column, empty, "is empty; every row needs a lead id"))
    first: dict[str, int] = {}
    dup = []
    for n, v in zip(table.row_numbers, ids):
        if v in first:
            dup.append((n, v))
        else:
            first[v] = n
    if dup:
        raise CsvImportError(_bad_rows_message(table, column, dup, "repeats a lead id of an earlier row"))
    return ids  # type: ignore[return-value]


def import_leads_csv(store: Store, path: str | Path, mapping: dict[str, str], id_column: str,
                     as_of: datetime, *, date_column: str | None = None, all_columns: bool = False,
                     exclude: Sequence[str] = (), missing: Sequence[str] = (), delimiter: str = ",",
                     encoding: str = "utf-8-sig", table: CsvTable | None = None) -> LeadsImport:
    """Create or update one lead per row. ``mapping`` maps trait keys to columns; with ``all_columns``
    every other column (not the id, date or ``exclude`` columns) becomes a trait named by ``slug``.
    Trait values are stamped ``date_column``'s date where given, else ``as_of``."""
    table = table or read_csv_table(path, missing, delimiter, encoding)
    table.require([("the lead id", id_column)] + [(f"trait '{k}'", c) for k, c in mapping.items()]
                  + ([("the lead date", date_column)] if date_column else []))
    unknown_excluded = [c for c in exclude if c not in table.columns]
    if unknown_excluded:
        table.require([("--exclude", c) for c in unknown_excluded])
    traits = dict(mapping)
    if all_columns:
        taken = set(mapping.values()) | {id_column, date_column} | set(exclude)
        for col in table.columns:
            key = slug(col)
            if col in taken:
                continue
            if key in traits:
                raise CsvImportError(f"{table.name}: column '{col}' would become trait '{key}', which "
                                     f"column '{traits[key]}' already fills; map one of them explicitly")
            traits[key] = col
    ids = _ids(table, id_column)
    dates = _parse_dates(table, date_column) if date_column else [None] * len(ids)
    idx = {key: table.columns.index(col) for key, col in traits.items()}
    rows: list[tuple[str, dict[str, Any], datetime]] = []
    for lead_id, row, date in zip(ids, table.rows, dates):
        values = {key: row[i] for key, i in idx.items() if row[i] is not None}
        rows.append((lead_id, values, date or as_of))
    with store.transaction():
        store.add_leads(rows, source=f"csv:{table.name}")
    return LeadsImport(len(rows), traits, table.dropped_columns)


def parse_outcome(value: str) -> bool | None:
    v = value.strip().lower()
    if v in YES:
        return True
    if v in NO:
        return False
    return None


def import_outcomes_csv(store: Store, path: str | Path, mapping: dict[str, str], *, outcome: str = "converted",
                        source: str | None = None, missing: Sequence[str] = (), delimiter: str = ",",
                        encoding: str = "utf-8-sig", table: CsvTable | None = None) -> OutcomesImport:
    """Store conversion labels. ``mapping``: ``lead_id`` → id column, ``outcome`` → a yes/no column
    (1/0, yes/no, true/false, won/lost…), optional ``date`` → when it was decided. Stored as
    ``outcomes(lead_id, outcome, value 1/0, ts, source)``. Rows with an empty outcome are open leads and are skipped. The rows of an earlier import
    from the same source and outcome are replaced."""
    allowed = {"lead_id", "outcome", "date"}
    extra = set(mapping) - allowed
    if extra or "lead_id" not in mapping or "outcome" not in mapping:
        raise CsvImportError(f"outcome mapping needs lead_id= and outcome= (optionally date=); "
                             f"got {sorted(mapping)}" + (f", unknown {sorted(extra)}" if extra else ""))
    table = table or read_csv_table(path, missing, delimiter, encoding)
    table.require([(f"outcome {k}", c) for k, c in mapping.items()])
    source = source or f"csv:{table.name}"
    ids = _ids(table, mapping["lead_id"])
    col = mapping["outcome"]
    labels, bad = [], []
    for n, v in zip(table.row_numbers, table.column(col)):
        parsed = None if v is None else parse_outcome(v)
        if v is not None and parsed is None:
            bad.append((n, v))
        labels.append(parsed)
    if bad:
        raise CsvImportError(_bad_rows_message(table, col, bad, "is not yes/no (1/0, yes/no, true/false, won/lost)"))
    dates = _parse_dates(table, mapping["date"]) if "date" in mapping else [None] * len(ids)
    rows = []
    for lead_id, label, date in zip(ids, labels, dates):
        if label is not None:
            rows.append((lead_id, outcome, 1.0 if label else 0.0, date, source))
    with store.transaction() as conn:
        store._execute(conn, "DELETE FROM outcomes WHERE source = ? AND outcome = ?", (source, outcome))
        store._bulk_insert(conn, "outcomes", ("lead_id", "outcome", "value", "ts", "source"), rows, conflict="plain")
    pos = sum(1 for r in rows if r[2] > 0)
    return OutcomesImport(len(rows), pos, len(rows) - pos, len(ids) - len(rows), outcome, source)
