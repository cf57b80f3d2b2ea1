"""Incremental re-scoring: from the last run (as_of t1, model version, scores) to a new instant t2,
re-score only the leads whose score can differ, and keep every other lead's row as it was.

A lead's score as of t2 can differ from its score as of t1 only when
* it has messages with ``t1 < ts <= t2`` (new events, new traits, a new lead), or a message that
  arrived late (``received_at > t1``) for an earlier instant; or
* time alone moved one of its events across an edge the model draws: a window (``age < W``), a
  decay step (``age > A``), an inactivity threshold (``age >= N``) or a stage's ``within``. For an
  edge at duration D, an event at ts is crossed between t1 and t2 exactly when ts lies in
  ``[t1 - D, t2 - D]`` (both ends kept: a superset is harmless, a miss is not); or
* a rule decays exponentially (``half_life``): its points change continuously, so every lead with
  a matching event is re-scored. Use decay steps where incremental runs matter.

The edges are tested in SQL over the event log, against each rule's cheap match (event names /
message type; a superset of what the rule counts), so the result is a superset of the leads whose
score changed, and re-scoring them gives exactly what a full run gives (tests/engine/test_incremental.py).

:func:`rescore_parquet` reads the whole log again on every run (to find the changed leads, then to
copy their history). For a log folder that grows by new files, :mod:`leadscore.engine.state` keeps
what a full run staged in a state file and reads only the new files: the same edges, answered from
one row per lead (``state.next_change_sql``), the same compiled query over the changed leads' rows
(``leadscore score --events DIR --state S``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.engine.compile import _prefilter, compile_model
from leadscore.engine.score import _frame, to_naive_utc
from leadscore.model.schema import Model, Rule
from leadscore.store.dialect import DUCKDB, Dialect, quote_literal


@dataclass
class LastRun:
    """What the previous run left: its instant, the model version it scored with, and its frame."""

    as_of: datetime
    model_version: str
    scores: pd.DataFrame


@dataclass
class IncrementalResult:
    frame: pd.DataFrame          # every lead, as a full run as of ``as_of`` would give
    rescored: list[str]          # the leads re-scored
    full: bool                   # True when a full run was needed (other model, earlier instant)
    reason: str


def video_event_match() -> str:
    """The events a video rule's facts come from (the player's events and CTA clicks), as SQL."""
    from leadscore.video.reconstruct import CTA_EVENT, VIDEO_EVENTS
    return f"event IN ({', '.join(quote_literal(e) for e in [*VIDEO_EVENTS, CTA_EVENT])})"


def _match(rule: Rule) -> str | None:
    """The cheap part of a rule's match as SQL (a superset of the events it counts); None for traits."""
    if rule.kind == "trait":
        return None
    if rule.video:
        return f"(type = 'track' AND {video_event_match()})"
    return _prefilter(rule)


def half_lives_as_steps(raw: dict, halvings: int = 4) -> dict:
    """A model file's dict with each ``half_life: Nd`` decay written as halving steps (after N, 2N, ...
    days keep 1/2, 1/4, ...): the schedule incremental runs can follow edge by edge."""
    for rule in raw.get("rules", []):
        decay = rule.get("decay") or {}
        if "half_life" in decay:
            days = int(str(decay["half_life"]).rstrip("d"))
            rule["decay"] = {"steps": [{"after": f"{days * k}d", "keep": 0.5 ** k} for k in range(1, halvings + 1)]}
    return raw


def _edges(rule: Rule) -> list[timedelta]:
    out = []
    if rule.window is not None:
        out.append(rule.window)
    if rule.decay is not None and rule.decay.steps:
        out.extend(s.after for s in rule.decay.steps)
    if rule.inactivity is not None:
        out.append(rule.inactivity.after)
    return out


def _ts(d: Dialect, t: datetime) -> str:
    return d.ts_literal(t.strftime("%Y-%m-%d %H:%M:%S.%f"))


def changed_leads_sql(model: Model, dialect: Dialect, t1: datetime, t2: datetime, events: str) -> str:
    """One SELECT of the distinct lead_ids whose score as of t2 may differ from the one as of t1."""
    d, T1, T2 = dialect, _ts(dialect, t1), _ts(dialect, t2)
    conds = [f"(ts > {T1})", f"(received_at > {T1})"]
    # Every condition but a continuous decay's holds only inside a few narrow time ranges: their union,
    # on the two timestamp columns alone, goes first, so the scan tests it before any text column.
    ranges = {f"ts > {T1}", f"received_at > {T1}"}
    continuous = False
    for rule in model.rules:
        match = _match(rule)
        if match is None:
            continue
        if rule.decay is not None and rule.decay.half_life is not None:
            conds.append(match)                      # continuous decay: every matching lead changes
            continuous = True
            continue
        for edge in _edges(rule):
            lo, hi = _ts(d, t1 - edge), _ts(d, t2 - edge)
            conds.append(f"({match} AND ts BETWEEN {lo} AND {hi})")
            ranges.add(f"ts BETWEEN {lo} AND {hi}")
    for stage in model.stages:
        w = stage.when
        if w is not None and w.event and w.within is not None:
            lo, hi = _ts(d, t1 - w.within), _ts(d, t2 - w.within)
            conds.append(f"(event IN ({', '.join(quote_literal(e) for e in w.event)}) AND ts BETWEEN {lo} AND {hi})")
            ranges.add(f"ts BETWEEN {lo} AND {hi}")
    when = "" if continuous else f"AND ({' OR '.join(sorted(ranges))}) "
    sql = (f"SELECT DISTINCT lead_id FROM {events} WHERE ts <= {T2} {when}AND lead_id IS NOT NULL "
           f"AND ({' OR '.join(conds)})")
    if _reads_account_traits(model):
        # A group call changes its account's traits, so every member's score: a member is any lead
        # with a message naming the account (a superset of the leads whose account it is now).
        new_groups = (f"SELECT group_id FROM {events} WHERE type = 'group' AND group_id IS NOT NULL "
                      f"AND ts <= {T2} AND (ts > {T1} OR received_at > {T1})")
        sql += (f" UNION SELECT DISTINCT lead_id FROM {events} WHERE lead_id IS NOT NULL AND ts <= {T2} "
                f"AND group_id IN ({new_groups})")
    return sql


def _reads_account_traits(model: Model) -> bool:
    from leadscore.engine.parquet import model_trait_keys
    return any(k.startswith("account.") for k in model_trait_keys(model))


def _full_needed(model: Model, last: LastRun | None, as_of: datetime) -> str | None:
    if last is None:
        return "no earlier run"
    if last.model_version != model.model_version:
        return f"the last run scored with model {last.model_version}, not {model.model_version}"
    if as_of < to_naive_utc(last.as_of):
        return "the new instant is before the last run's"
    return None


def merge_scores(last: pd.DataFrame, fresh: pd.DataFrame, rescored: list[str]) -> pd.DataFrame:
    """The last frame with the re-scored leads' rows replaced (and new leads added), ordered like a
    full run (score descending, then lead_id).

    The last frame is already in that order (checked), so only the fresh rows are placed, by binary
    search, instead of sorting a million rows again for a few thousand changed ones."""
    keep = last[~last["lead_id"].isin(set(rescored))]
    fresh = fresh[last.columns].sort_values(["score", "lead_id"], ascending=[False, True], kind="stable")
    neg = -keep["score"].to_numpy(float)
    ids = keep["lead_id"].to_numpy(object)
    ordered = bool(np.all((neg[1:] > neg[:-1]) | ((neg[1:] == neg[:-1]) & (ids[1:] > ids[:-1])))) if len(keep) > 1 else True
    if not ordered or np.isnan(neg).any() or fresh["score"].isna().any():
        out = pd.concat([keep, fresh], ignore_index=True)
        return out.sort_values(["score", "lead_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    f_neg = -fresh["score"].to_numpy(float)
    f_ids = fresh["lead_id"].to_numpy(object)
    lo = np.searchsorted(neg, f_neg, "left")
    hi = np.searchsorted(neg, f_neg, "right")
    # among the kept rows of an equal score, a fresh row goes after the lead_ids smaller than its own
    pos = np.array([a + int(np.searchsorted(ids[a:b], lid)) if b > a else a for a, b, lid in zip(lo, hi, f_ids)],
                   dtype=np.int64)
    slots = pos + np.arange(len(pos))               # final row of each fresh row (both inputs ordered)
    taken = np.zeros(len(keep) + len(fresh), dtype=bool)
    taken[slots] = True
    order = np.empty(len(taken), dtype=np.int64)
    order[slots] = len(keep) + np.arange(len(fresh))
    order[~taken] = np.arange(len(keep))
    out = pd.concat([keep, fresh], ignore_index=True)
    return out.take(order).reset_index(drop=True)


def rescore_parquet(model: Model, events_path: str | Path, last: LastRun | None, as_of: datetime,
                    catalog: str | Path | None = None, conn=None, memory_limit: str | None = None,
                    threads: int | None = None, temp_dir: str | None = None) -> IncrementalResult:
    """Scores of a Parquet event log as of ``as_of``, re-scoring only what changed since ``last``."""
    from leadscore.engine.parquet import LOG_SOURCES, open_duckdb, register_events_view, register_log
    as_of = to_naive_utc(as_of)
    own = conn is None
    conn = conn or open_duckdb(memory_limit, threads, temp_dir)
    try:
        why = _full_needed(model, last, as_of)
        if why is not None:
            sources = register_log(conn, model, events_path, as_of, catalog)
            compiled = compile_model(model, DUCKDB, as_of, sources=sources)
            frame = _frame(model, conn.sql(compiled.sql).to_arrow_table())
            return IncrementalResult(frame, list(frame["lead_id"]), True, why)
        t1 = to_naive_utc(last.as_of)
        # Known leads that changed, and leads the last run did not know (first seen since): one pass
        # over the few columns the edges read.
        events = register_events_view(conn, events_path)
        changed = {r[0] for r in conn.sql(changed_leads_sql(model, DUCKDB, t1, as_of, events)).fetchall()}
        if not changed:
            return IncrementalResult(last.scores.copy(), [], False, "nothing changed")
        leads = sorted(changed)
        compiled = compile_model(model, DUCKDB, as_of, leads=leads, sources=LOG_SOURCES)
        sources = register_log(conn, model, events_path, as_of, catalog, leads=leads,   # those leads' messages only
                               context=compiled.reads_context)
        if sources != LOG_SOURCES:   # a typed log (STRUCT properties): compiled for its struct fields
            compiled = compile_model(model, DUCKDB, as_of, leads=leads, sources=sources)
        fresh = _frame(model, conn.sql(compiled.sql).to_arrow_table())
        return IncrementalResult(merge_scores(last.scores, fresh, leads), leads, False,
                                 f"{len(leads)} lead(s) with new events or crossed edges")
    finally:
        if own:
            conn.close()
