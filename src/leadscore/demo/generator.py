"""The demo population, chunk by chunk: each chunk of leads becomes one Arrow table of event rows
(the event log's columns plus ``lead_id``) and one table of hidden truth.

A chunk depends only on (seed, chunk number): the same seed gives byte-identical output however
the chunks are consumed, and memory stays bounded by one chunk whatever the population's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.demo.activity import CTX_EMAIL, CTX_SERVER, CTX_WEB, ID_ANON, ID_BOTH, ID_GROUP, ID_USER, VOCAB, draw_activity
from leadscore.demo.pools import SENIORITIES
from leadscore.demo.population import JUNK_KINDS, draw_population, join, num_text
from leadscore.events import EVENT_COLUMNS

DEFAULT_END = datetime(2026, 11, 1)   # naive UTC; the population's year ends here
CHUNK_LEADS = 10_000                  # fixed: part of what a seed means (changing it changes the output)
MAX_LEADS = 10_000_000
OUTCOMES = ("none", "open", "won", "lost")

EVENT_SCHEMA = pa.schema(
    [(c, pa.timestamp("us") if c in ("ts", "original_ts", "sent_at", "received_at") else pa.string())
     for c in EVENT_COLUMNS] + [("lead_id", pa.string())])
TRUTH_SCHEMA = pa.schema([("lead_id", pa.string()), ("intent", pa.float64()), ("converted", pa.bool_()),
                          ("converted_at", pa.timestamp("us")), ("outcome", pa.string()),
                          ("outcome_at", pa.timestamp("us")), ("account_id", pa.string()),
                          ("seniority", pa.string()), ("in_market", pa.bool_()), ("junk", pa.string()),
                          ("ie11", pa.bool_())])


@dataclass(frozen=True)
class DemoConfig:
    """What a population is: its size, its seed and the instant its year ends."""
    leads: int
    seed: int = 42
    end: datetime = DEFAULT_END

    def __post_init__(self) -> None:
        if not isinstance(self.leads, int) or not 1 <= self.leads <= MAX_LEADS:
            raise ValueError(f"leads: expected a whole number from 1 to {MAX_LEADS:,}, got {self.leads!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected a whole number ≥ 0, got {self.seed!r}")
        if self.end.tzinfo is not None:
            object.__setattr__(self, "end", self.end.astimezone(timezone.utc).replace(tzinfo=None))

    @property
    def chunks(self) -> int:
        return -(-self.leads // CHUNK_LEADS)

    @property
    def end_s(self) -> float:
        return (self.end - datetime(1970, 1, 1)).total_seconds()


@dataclass
class DemoChunk:
    index: int
    first_lead: int
    leads: int
    events: pa.Table      # EVENT_SCHEMA, ordered by lead then time
    truth: pa.Table       # TRUTH_SCHEMA, one row per lead


def generate_chunk(config: DemoConfig, index: int) -> DemoChunk:
    first = index * CHUNK_LEADS
    n = min(CHUNK_LEADS, config.leads - first)
    if n <= 0:
        raise IndexError(f"chunk {index} is past the population of {config.leads} leads")
    rng = np.random.default_rng([config.seed, index])
    pop = draw_population(rng, first, n)
    end = config.end_s
    act = draw_activity(rng, pop, end - 365 * 86400.0, end)

    lead = np.concatenate([p.lead for p in act.parts])
    t_ms = np.round(np.concatenate([p.t for p in act.parts]) * 1000).astype(np.int64)
    code = np.concatenate([np.broadcast_to(np.asarray(p.code, np.int64), p.lead.shape) for p in act.parts])
    ctx = np.concatenate([np.full(len(p.lead), p.ctx, np.int64) for p in act.parts])
    ids = np.concatenate([np.full(len(p.lead), p.ids, np.int8) for p in act.parts])
    props = pa.concat_arrays([p.props for p in act.parts])
    seq = np.arange(len(lead))
    keep = t_ms <= int(round(end * 1000))            # nothing at or after the end instant exists yet
    order = np.lexsort((seq, t_ms, lead))
    order = order[keep[order]]
    lead, t_ms, code, ctx, ids = lead[order], t_ms[order], code[order], ctx[order], ids[order]
    props = props.take(pa.array(order))
    counts = np.bincount(lead, minlength=n)
    k = np.arange(len(lead)) - np.repeat(np.cumsum(counts) - counts, counts)

    sel = pa.array(lead)
    uid = pop.user_id.take(sel)
    null = pa.nulls(len(lead), pa.string())
    types = pa.array([v[0] for v in VOCAB]).take(pa.array(code))
    events = pa.array([v[1] for v in VOCAB], pa.string()).take(pa.array(code))
    names = pa.array([v[2] for v in VOCAB], pa.string()).take(pa.array(code))
    has_user = pa.array(ids != ID_ANON)
    has_anon = pa.array((ids == ID_ANON) | (ids == ID_BOTH))
    contexts = pa.concat_arrays([pop.ctx_web, pop.ctx_email, pop.ctx_server])
    ts = pa.array(t_ms, pa.timestamp("ms")).cast(pa.timestamp("us"))
    table = pa.table({
        "message_id": join(f"m{config.seed}-", pop.lead_num.take(sel), "-", num_text(k)),
        "type": types, "event": events, "name": names,
        "user_id": pc.if_else(has_user, uid, null),
        "anonymous_id": pc.if_else(has_anon, pop.anonymous_id.take(sel), null),
        "group_id": pc.if_else(pa.array(ids == ID_GROUP), pop.account_id.take(sel), null),
        "previous_id": null,
        "ts": ts, "original_ts": ts, "sent_at": pa.nulls(len(lead), pa.timestamp("us")), "received_at": ts,
        "properties": props,
        "context": contexts.take(pa.array(ctx * n + lead)),
        "lead_id": uid,
    }, schema=EVENT_SCHEMA)
    assert CTX_WEB == 0 and CTX_EMAIL == 1 and CTX_SERVER == 2 and ID_USER == 0  # the layout above

    won = act.outcome == 2
    # The outcome's time exactly as its event carries it (milliseconds).
    out_t = pa.array(np.where(np.isnan(act.outcome_t), 0, np.round(act.outcome_t * 1000)).astype(np.int64) * 1000,
                     pa.timestamp("us"))
    has_out = pa.array(~np.isnan(act.outcome_t))
    null_ts = pa.nulls(n, pa.timestamp("us"))
    truth = pa.table({
        "lead_id": pop.user_id, "intent": pa.array(np.round(pop.intent, 4)), "converted": pa.array(won),
        "converted_at": pc.if_else(pa.array(won), out_t, null_ts),
        "outcome": pa.array(OUTCOMES).take(pa.array(act.outcome)),
        "outcome_at": pc.if_else(has_out, out_t, null_ts),
        "account_id": pop.account_id,
        "seniority": pa.array(SENIORITIES).take(pa.array(pop.seniority)),
        "in_market": pa.array(pop.country_in_market),
        "junk": pa.array(JUNK_KINDS).take(pa.array(pop.junk)),
        "ie11": pa.array(pop.ie11),
    }, schema=TRUTH_SCHEMA)
    return DemoChunk(index, first, n, table, truth)


def generate_chunks(config: DemoConfig) -> Iterator[DemoChunk]:
    """Every chunk of the population in order (bounded memory: one chunk at a time)."""
    for index in range(config.chunks):
        yield generate_chunk(config, index)
