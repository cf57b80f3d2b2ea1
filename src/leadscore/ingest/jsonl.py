"""JSON Lines event files → the store. Every line is validated; a bad line is reported with its line
number and field and the whole file is refused (one transaction, nothing stored), unless the caller
asks to skip invalid lines, which then go to a rejects file with their reasons."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from leadscore.events import Event, MessageErrors, normalize_message
from leadscore.store import Store

CHUNK = 5_000


@dataclass
class LineError:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class EventFileError(ValueError):
    def __init__(self, errors: list[LineError]):
        self.errors = errors
        shown = "\n".join(str(e) for e in errors[:50])
        more = f"\n... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(shown + more)


@dataclass
class FileIngest:
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    leads: set[str] = field(default_factory=set)


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open("r", encoding="utf-8")


def read_events(path: Path, received_at: datetime) -> Iterator[tuple[int, Event | None, list[LineError], str]]:
    name = path.name
    with _open(path) as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, None, [LineError(name, number, "(json)", f"not valid JSON: {exc.msg} at column {exc.colno}")], text
                continue
            try:
                yield number, normalize_message(raw, received_at), [], text
            except MessageErrors as exc:
                yield number, None, [LineError(name, number, e.loc, e.message) for e in exc.errors], text


def ingest_jsonl(store: Store, path: str | Path, received_at: datetime, skip_invalid: bool = False,
                 rejects_path: str | Path | None = None,
                 progress: Callable[[int], None] | None = None) -> FileIngest:
    path = Path(path)
    result = FileIngest()
    errors: list[LineError] = []
    rejects = None
    if skip_invalid:
        rejects = Path(rejects_path or f"{path}.rejects.jsonl").open("w", encoding="utf-8")
    try:
        with store._lock, store.transaction() as conn:
            chunk: list[Event] = []
            for number, event, errs, text in read_events(path, received_at):
                result.lines += 1
                if progress:
                    progress(len(text))
                if errs:
                    result.rejected += 1
                    if skip_invalid:
                        rejects.write(json.dumps({"line": number, "errors": [f"{e.field}: {e.message}" for e in errs],
                                                  "message": text.rstrip("\n")}) + "\n")
                    else:
                        errors.extend(errs)
                    continue
                if errors:
                    continue  # the file will be refused: only keep collecting errors
                chunk.append(event)
                if len(chunk) >= CHUNK:
                    _flush(store, conn, chunk, result)
            if errors:
                raise EventFileError(errors)  # rolls the transaction back: nothing stored
            _flush(store, conn, chunk, result)
    finally:
        if rejects:
            rejects.close()
    return result


def _flush(store: Store, conn, chunk: list[Event], result: FileIngest) -> None:
    if not chunk:
        return
    res = store._ingest(conn, chunk)
    result.stored += res.stored
    result.duplicates += res.received - res.stored
    result.leads |= res.leads_touched
    chunk.clear()
