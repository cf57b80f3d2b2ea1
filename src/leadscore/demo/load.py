"""The demo population straight into a store: event rows built from the generator's columns, no
JSON round trip, ingested in batches (each batch one transaction)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from leadscore.demo.generator import DemoChunk, DemoConfig, generate_chunks
from leadscore.events import Event
from leadscore.events.normalize import video_values_from_json
from leadscore.store import Store

Progress = Callable[[int, int], None]   # (leads done, events done) so far
_EMPTY = MappingProxyType({})


@dataclass
class DemoEvent(Event):
    """An event row whose JSON text is already known (the generator wrote it column-wise).

    ``row()`` hands the store that text instead of dumping the dicts again. ``properties`` and
    ``context`` are parsed only where the store reads them: the traits of identify and group calls
    and the user agent of identify calls (each lead has one browser, so its identify names it).
    ``row_anonymous_id`` is the anonymousId stored with the row; see ``load_population`` for why
    the object itself may not carry it."""
    properties_json: str = "{}"
    context_json: str = "{}"
    row_anonymous_id: str | None = None

    def row(self) -> tuple:
        return (self.message_id, self.type, self.event, self.name, self.user_id, self.row_anonymous_id,
                self.group_id, self.previous_id, self.ts, self.original_ts, self.sent_at,
                self.received_at, self.properties_json, self.context_json)

    def stored_row(self) -> tuple:
        return self.row() + video_values_from_json(self.type, self.properties_json)


def chunk_events(chunk: DemoChunk) -> list[Event]:
    """The chunk's event rows as ``Event`` objects, ready for ``store.ingest``."""
    t = chunk.events
    col = {name: t.column(name).to_pylist() for name in
           ("message_id", "type", "event", "name", "user_id", "anonymous_id", "group_id",
            "properties", "context")}
    kinds, props, ctx = col["type"], col["properties"], col["context"]
    # Rows whose dicts the store never reads share one read-only empty mapping.
    prop_dicts = [json.loads(p) if k in ("identify", "group") else _EMPTY for k, p in zip(kinds, props)]
    ctx_dicts = [json.loads(c) if k == "identify" else _EMPTY for k, c in zip(kinds, ctx)]
    nones = [None] * len(kinds)
    # numpy makes the datetime objects an order of magnitude faster than Arrow's to_pylist.
    ts = t.column("ts").combine_chunks().to_numpy().astype("datetime64[us]").astype(object).tolist()
    # Positional construction through map(): no Python-level loop body per event.
    return list(map(DemoEvent, col["message_id"], kinds, col["event"], col["name"], col["user_id"],
                    col["anonymous_id"], col["group_id"], nones, ts, ts, nones, ts, prop_dicts, ctx_dicts,
                    props, ctx, col["anonymous_id"]))


def iter_event_batches(config: DemoConfig, batch_leads: int = 2000) -> Iterator[tuple[int, list[Event]]]:
    """(leads in the batch, their events) for the whole population, ``batch_leads`` leads at a time."""
    for chunk in generate_chunks(config):
        lead_ids = chunk.events.column("lead_id")
        for start in range(0, chunk.leads, batch_leads):
            count = min(batch_leads, chunk.leads - start)
            # Rows are ordered by lead, so a batch of leads is one slice of the table.
            first_id = chunk.truth.column("lead_id")[start].as_py()
            last_id = chunk.truth.column("lead_id")[start + count - 1].as_py()
            lo = _bisect(lead_ids, first_id, left=True)
            hi = _bisect(lead_ids, last_id, left=False)
            part = DemoChunk(chunk.index, chunk.first_lead + start, count, chunk.events.slice(lo, hi - lo),
                             chunk.truth.slice(start, count))
            yield count, chunk_events(part)


def _bisect(column: pa.ChunkedArray, value: str, left: bool) -> int:
    # Lead ids are zero-padded to one width within a chunk, so text order is lead order.
    flags = pc.less(column, value) if left else pc.less_equal(column, value)
    return int(pc.sum(flags).as_py() or 0)


def load_population(store: Store, config: DemoConfig, progress: Progress | None = None,
                    batch_leads: int = 2000) -> tuple[int, int]:
    """Generate the population into ``store``; returns (leads, events stored).

    Each batch is one transaction. The identify call that links a lead's anonymousId is handed to
    ``store.ingest`` without the link, and the batch's links are written set-wise in the same
    transaction: ``Store._link`` costs four round trips per new id (about 14 ms on DuckDB), which
    would make 100,000 leads take half an hour. This is equivalent here because every anonymousId
    is a fresh UUID and no lead id is ever an alias, so no chain needs re-pointing; a link that is
    already stored (loading the same population again) is kept, as ``_link`` would keep it.
    """
    leads = stored = 0
    for count, events in iter_event_batches(config, batch_leads):
        links = {}
        for ev in events:
            if ev.type == "identify" and ev.anonymous_id and ev.user_id:
                links.setdefault(ev.anonymous_id, (ev.anonymous_id, ev.user_id, ev.ts))
                ev.anonymous_id = None
        with store.transaction() as conn:
            result = store.ingest(events)
            if links:
                store._bulk_insert(conn, "identities", ("alias_id", "lead_id", "ts"), list(links.values()),
                                   conflict="ignore")
        leads += count
        stored += result.stored
        if progress:
            progress(leads, stored)
    return leads, stored
