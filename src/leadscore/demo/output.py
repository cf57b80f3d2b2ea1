"""The demo population written out: Segment messages (dicts or JSON Lines), the Parquet event log,
the truth file and the video catalog.

A message line is assembled column-wise from the same Arrow columns the Parquet file holds, so the
two formats describe the same events by construction.
"""
from __future__ import annotations

import gzip
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore.demo.catalog import write_catalog
from leadscore.demo.generator import EVENT_SCHEMA, DemoChunk, DemoConfig, generate_chunk, generate_chunks

FORMATS = ("jsonl", "jsonl.gz", "parquet", "parquet-typed")
FILE_NAMES = {"parquet-typed": "events-typed.parquet"}   # else events.<format>
Progress = Callable[[int, int], None]   # (leads done, events done) so far


def iso_text(ts: pa.Array) -> pa.Array:
    """Timestamps as ISO 8601 UTC with milliseconds: 2026-05-01T10:00:00.000Z."""
    values = ts.cast(pa.int64()).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    text = np.datetime_as_string(values, unit="ms")
    return pa.array(np.char.add(text, "Z") if len(text) else text.astype(str), pa.string())


def _opt(key: str, values: pa.Array) -> pa.Array:
    """`,"key":"value"` where the value is set, null (left out) where it is not."""
    return pc.binary_join_element_wise(f',"{key}":"', values, '"', "")


def message_lines(events: pa.Table) -> pa.Array:
    """One Segment message per event row, as JSON text (no newline)."""
    col = events.column
    kind = col("type").combine_chunks()
    is_trait = pc.is_in(kind, pa.array(["identify", "group"]))
    body_key = pc.if_else(is_trait, ',"traits":', ',"properties":')
    parts = ['{"type":"', kind, '","messageId":"', col("message_id"), '","timestamp":"',
             iso_text(col("ts").combine_chunks()), '"',
             _opt("userId", col("user_id")), _opt("anonymousId", col("anonymous_id")),
             _opt("event", col("event")), _opt("name", col("name")), _opt("groupId", col("group_id")),
             body_key, col("properties"), ',"context":', col("context"), "}"]
    out = pc.binary_join_element_wise(*parts, "", null_handling="skip")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def iter_messages(config: DemoConfig) -> Iterator[dict]:
    """The population as Segment message dicts (JSON-serialisable), lead by lead in time order."""
    for chunk in generate_chunks(config):
        for line in message_lines(chunk.events).to_pylist():
            yield json.loads(line)


@dataclass
class Written:
    leads: int
    events: int
    files: list[Path]


def _chunks(config: DemoConfig, workers: int) -> Iterator[DemoChunk]:
    """Chunks in order; with workers > 1 they are drawn in parallel processes (same output)."""
    if workers <= 1 or config.chunks == 1:
        yield from generate_chunks(config)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = []
        nxt = 0
        while nxt < config.chunks or pending:
            while nxt < config.chunks and len(pending) < 2 * workers:
                pending.append(pool.submit(generate_chunk, config, nxt))
                nxt += 1
            yield pending.pop(0).result()


def _truth_table(truth: pa.Table) -> pa.Table:
    cols = {}
    for name in truth.column_names:
        c = truth.column(name).combine_chunks()
        if pa.types.is_timestamp(c.type):
            cols[name] = pc.if_else(pc.is_null(c), pa.scalar(None, pa.string()),
                                    iso_text(c.fill_null(0)))
        else:
            cols[name] = c
    return pa.table(cols)


def write_population(config: DemoConfig, out_dir: str | Path, fmt: str = "jsonl",
                     progress: Progress | None = None, workers: int = 1) -> Written:
    """Write DIR/events.{jsonl,jsonl.gz,parquet} (or DIR/events-typed.parquet), DIR/truth.csv and
    DIR/videos.yaml.

    Parquet columns are the event log's (``EVENT_COLUMNS``) plus ``lead_id``; properties and
    context are JSON text, or with ``parquet-typed`` STRUCT columns (one field per key, as a
    warehouse export keeps them): the JSON log converted by :func:`leadscore.engine.typed_log.convert_to_typed`,
    so the two describe the same events. Files are written whole or not at all (a temporary name,
    then a rename).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events_path = out / FILE_NAMES.get(fmt, f"events.{fmt}")
    truth_path = out / "truth.csv"
    tmp_events = events_path.with_name(events_path.name + ".part")
    typed = fmt == "parquet-typed"
    # parquet-typed: the JSON-text log first (the struct type needs every message's keys), then converted
    tmp_json = out / "events-json.parquet.part" if typed else tmp_events
    tmp_truth = truth_path.with_name("truth.csv.part")
    leads = events = 0
    try:
        truth_writer = None
        with open(tmp_truth, "wb") as truth_sink:
            if fmt in ("parquet", "parquet-typed"):
                writer = pq.ParquetWriter(tmp_json, EVENT_SCHEMA, compression="zstd")
                sink = None
            else:
                writer = None
                raw = open(tmp_events, "wb")
                # No name and no time in the gzip header: the same seed gives the same bytes.
                sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if fmt == "jsonl.gz" else raw
            try:
                for chunk in _chunks(config, workers):
                    if writer is not None:
                        writer.write_table(chunk.events, row_group_size=1_000_000)
                    else:
                        lines = message_lines(chunk.events)
                        sink.write(("\n".join(lines.to_pylist()) + "\n").encode())
                    table = _truth_table(chunk.truth)
                    if truth_writer is None:
                        # Arrow quotes header names whatever the style; every value here is a plain word.
                        truth_sink.write((",".join(table.column_names) + "\n").encode())
                        truth_writer = pacsv.CSVWriter(truth_sink, table.schema, write_options=pacsv.WriteOptions(
                            include_header=False, quoting_style="none"))
                    truth_writer.write_table(table)
                    leads += chunk.leads
                    events += chunk.events.num_rows
                    if progress:
                        progress(leads, events)
            finally:
                if writer is not None:
                    writer.close()
                if sink is not None:
                    sink.close()
                    raw.close()
                if truth_writer is not None:
                    truth_writer.close()
        if typed:
            from leadscore.engine.typed_log import convert_to_typed
            convert_to_typed(tmp_json, tmp_events)
        tmp_events.replace(events_path)
        tmp_truth.replace(truth_path)
    except BaseException:
        tmp_events.unlink(missing_ok=True)
        tmp_truth.unlink(missing_ok=True)
        raise
    finally:
        if typed:
            tmp_json.unlink(missing_ok=True)
    catalog = write_catalog(out / "videos.yaml")
    return Written(leads, events, [events_path, truth_path, catalog])
