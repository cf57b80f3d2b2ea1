"""Partial re-scores for the live path: a batch of events re-derives only the rules it can move.

A live pass (``leadscore.service.live``) re-scores every lead a batch touched as of the batch's
instant. Deriving a lead from its whole history costs the same whether the batch brought it one page
view or a hundred messages, and most of a lead's rules cannot move with one page view: an e-mail
rule counts e-mail events, a video rule counts player events. So each scored lead's per-rule results
are kept in the rule cache (``live_rule_cache``, migration 0015: points and hits per rule and stage
event flag, written in the transaction that writes its score), and a lead is re-scored by the same
compiled query with only these rules derived from its events (``compile_model``'s ``fresh``):

* the rules a new message can match: its event name / message type against each rule's cheap match
  (:func:`touched`; a superset of what the rule counts, the same test the incremental runs use), a
  response-time multiplier's reference event, the stage flags naming the event;
* the rules that move at every instant: half-life decays;
* inactivity rules with ``if_never`` (points with no message at all: a first visit's zero row must
  not stand in for them);
* the trait rules (cheap, and traits change with identify calls, which take the full path anyway).

Every other rule's points and hits come from the cache, and groups, axes, tiers, stages and grade are
computed on top by the same query, so a partial re-score gives exactly a full re-score's row
(tests/engine/test_partial.py compares every lead and column). A lead takes the full path when its
cache row is missing or of another version (:func:`cache_version`: the model, the video catalog, the
disposable-domain list), when time alone may have moved one of its cached
rules since (the cache row's ``valid_until``, the first window edge, decay step, inactivity threshold
or stage ``within`` from its instant on, or a message stored before its time: see
``compile._valid_until_sql``), or when the batch brought it anything but track/page/screen messages
(an identify or alias can merge another id's history into it). A first visit (no cache row, no stored
message but the batch's: :func:`new_leads`) takes the partial path: its other rules are zero.

The time scheduler reads the same cache (:func:`due_leads`): only the leads whose ``valid_until`` has
passed, that hold a half-life rule's hits, whose account changed, or that have no usable cache row are
re-scored on a tick. (With half-life decays on common events, as the shipped default model has on page
views, that is nearly everyone; a model with decay steps re-scores only the leads crossing an edge.)
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime

import pandas as pd
import pyarrow as pa

from leadscore.engine.compile import ENGAGEMENT_TYPES
from leadscore.engine.incremental import _ts
from leadscore.engine.score import score_leads_state, to_naive_utc
from leadscore.model.schema import Model, Rule
from leadscore.store import Store
from leadscore.store.dialect import quote_literal

CACHE = "live_rule_cache"
CACHE_FORMAT = 1   # bump when what a cache row holds or how the engine derives it changes
_COLS = ("lead_id", "model_version", "as_of", "valid_until", "moving", "pts", "hits")


def stage_flags(model: Model) -> list[tuple[list[str], object]]:
    """The stage event flags in the compiled query's order (``compile._stage_sql``): (events, within)."""
    return [(list(s.when.event), s.when.within) for s in model.stages if s.when is not None and s.when.event]


def always_derived(model: Model) -> set[int]:
    """Rules derived in every re-score: trait rules, continuous (half-life) decays, and inactivity rules
    that also apply to leads that never had a matching event (``if_never``: besides trait rules, the one
    kind of rule that gives points with no message, which a first visit's zero row (:func:`new_leads`)
    must not hide)."""
    return {i for i, r in enumerate(model.rules)
            if r.kind == "trait" or (r.decay is not None and r.decay.half_life is not None)
            or (r.kind == "inactivity" and r.inactivity.if_never)}


def _reads(rule: Rule, type_: str, event: str | None) -> bool:
    """Whether a message of this type and event name can be one the rule counts (or a reference of
    its response-time multiplier): ``incremental._match`` in Python, a superset of the rule's match."""
    if rule.kind == "trait":
        return False
    if any(m.response_time is not None and m.response_time.since_event == event for m in rule.multipliers):
        return True
    if rule.video:
        from leadscore.video.reconstruct import CTA_EVENT, VIDEO_EVENTS
        return type_ == "track" and (event in VIDEO_EVENTS or event == CTA_EVENT)
    names = rule.event_names
    types = None if rule.type is None else ([rule.type] if isinstance(rule.type, str) else list(rule.type))
    if names and event not in names:
        return False
    if types is not None and type_ not in types:
        return False
    if rule.page is not None and type_ != "page":
        return False
    if not names and types is None and rule.page is None:
        return type_ in ENGAGEMENT_TYPES
    return True


def touched(model: Model, messages: Iterable[tuple[str, str | None]]) -> set[int]:
    """The rules (and stage flags, as ``-(k + 1)``) that messages of these (type, event) can move."""
    out: set[int] = set()
    flags = stage_flags(model)
    for type_, event in set(messages):
        out |= {i for i, rule in enumerate(model.rules) if i not in out and _reads(rule, type_, event)}
        out |= {-(k + 1) for k, (events, _) in enumerate(flags) if event in events}
    return out


def plan(model: Model, leads: list[str], messages: Mapping[str, set[tuple[str, str | None]]],
         cached: set[str], firsts: set[str] = frozenset()) -> list[tuple[list[str], set[int] | None]]:
    """Groups of leads and the rules to derive for each (None: all, the full path).

    ``messages``: each lead's new messages as (type, event); ``cached``: the leads whose cache row can
    stand in for their other rules (:func:`cached_leads`); ``firsts``: the leads with no message but
    the batch's and no cache row at all (:func:`new_leads`: a missing row reads as zero points and
    hits), partial like cached leads, unless they would make a partial query of their own beside a
    full one: then they go with the full one (a pass never runs more queries for them)."""
    cached = cached | firsts
    always = always_derived(model)
    by_messages: dict[frozenset, frozenset[int]] = {}   # a batch's leads share a few message kinds
    groups: dict[frozenset[int] | None, list[str]] = {}
    for lead in leads:
        mine = messages.get(lead)
        fresh: frozenset[int] | None = None
        if lead in cached and mine and all(t in ENGAGEMENT_TYPES for t, _ in mine):
            key = frozenset(mine)
            fresh = by_messages.get(key)
            if fresh is None:
                fresh = by_messages[key] = frozenset(always | touched(model, mine))
        groups.setdefault(fresh, []).append(lead)
    if len([k for k in groups if k is not None]) > 4:
        # Many different rule sets (a mixed batch): one query deriving their union, not one each.
        union = frozenset().union(*(k for k in groups if k is not None))
        merged = [lead for k, ls in groups.items() if k is not None for lead in ls]
        groups = {k: v for k, v in groups.items() if k is None}
        groups[union] = merged
    if firsts and None in groups:
        for k in [k for k, ls in groups.items() if k is not None and firsts.issuperset(ls)]:
            groups[None] += groups.pop(k)
    return [(ls, None if k is None else set(k)) for k, ls in groups.items()]


def cache_version(store: Store, model: Model) -> str:
    """What a cache row was derived with besides the lead's own messages and traits: this module's
    format, the model version, the disposable-domain list (``is:`` conditions) and, for a model with
    video rules, the video catalog (titles, categories, durations feed the facts). A row of another
    version is not read: its lead takes the full path."""
    video = any(r.video for r in model.rules)
    catalog = ("(SELECT count(*), max(imported_at), sum(duration), sum(length(coalesce(title, '') || "
               "coalesce(category, '') || coalesce(stage, ''))) FROM video_catalog)") if video else "(SELECT 0)"
    row = store.query(f"SELECT (SELECT count(*) FROM ref_disposable_domains), c.* FROM {catalog} c")[0]
    digest = hashlib.sha256(repr((CACHE_FORMAT, tuple(row))).encode()).hexdigest()[:12]
    return f"{model.model_version}/{digest}"


def cached_leads(store: Store, version: str, as_of: datetime, leads: list[str]) -> set[str]:
    """The leads whose cache row can stand in for their rules as of ``as_of``: of this cache version
    (:func:`cache_version`), scored as of an instant not after ``as_of``, and good until after it."""
    if not leads:
        return set()
    at = _ts(store.dialect, as_of)
    with store.transaction() as conn:
        # The test in SQL: only the ids come back (a Python datetime per row cost ~10 µs a lead).
        rows = store._fetch_in(conn, f"SELECT lead_id FROM {CACHE} WHERE lead_id IN {{ids}} AND model_version = "
                                     f"{quote_literal(version)} AND as_of <= {at} AND "
                                     f"(valid_until IS NULL OR valid_until > {at})", leads)
    return {r[0] for r in rows}


# Past this many uncached leads in a batch, :func:`new_leads` is not asked (they take the full path): a
# batch's brand-new leads are a few first visits, and many uncached leads (a cache retired by a new
# model or catalog) have cache rows of another version anyway.
NEW_LEADS_MAX = 200


def new_leads(store: Store, leads: Iterable[str], message_ids: Mapping[str, set[str]]) -> set[str]:
    """The leads whose only stored messages are the batch's own (``message_ids``: each lead's) and that
    have no cache row at all (of any version): first visits. Every rule their batch's messages cannot
    match then holds zero points and hits, which is what the partial query reads for a lead without a
    cache row; the rules that give points with no message are always derived (:func:`always_derived`).
    So such a lead takes the partial path, in the same query as the batch's cached leads, instead of a
    second query of its own (~0.1 s of DuckDB planning for the default model). A message of the lead's
    stored but not in the batch (an earlier one never scored, a later batch's already stored, or the
    identify or alias call that merged another id's history into it: every identity link is a message
    of the lead's own id) or any cache row (another model's) leaves it on the full path. Checked
    through the id indexes, for a few leads only."""
    asked = sorted(lead for lead in leads if message_ids.get(lead))
    if not asked or len(asked) > NEW_LEADS_MAX:
        return set()
    with store.transaction() as conn:
        # The partial query joins the cache by lead alone: a row of any version would be read. (A lead
        # without stored messages has none: an erasure deletes its cache row with its messages.)
        known = {r[0] for r in store._fetch_in(conn, f"SELECT lead_id FROM {CACHE} WHERE lead_id IN {{ids}}", asked)}
        asked = [lead for lead in asked if lead not in known]
        stored = (store._fetch_in(conn, "SELECT user_id, message_id FROM events WHERE user_id IN {ids}", asked)
                  if asked else [])
    for user_id, message_id in stored:
        if message_id not in message_ids[user_id]:
            known.add(user_id)
    return {lead for lead in asked if lead not in known}


def score_live(store: Store, model: Model, as_of: datetime, leads: list[str] | None,
               messages: Mapping[str, set[tuple[str, str | None]]] | None = None, *,
               activity: bool = True,
               message_ids: Mapping[str, set[str]] | None = None) -> tuple[pd.DataFrame, pa.Table, dict[str, int]]:
    """Score ``leads`` as of ``as_of`` (the frame ``score_leads`` gives), partially where the cache
    allows (see the module doc); also each lead's new rule state for :func:`save_cache`, and how many
    leads took each path ({"partial": n, "full": m}). The state carries its cache version (one query a
    pass). ``message_ids``: each lead's new messages' ids, to find the batch's first visits (:func:`new_leads`)."""
    as_of = to_naive_utc(as_of)
    version = cache_version(store, model)
    if leads is None:
        groups = [(None, None)]
    else:
        cached = cached_leads(store, version, as_of, leads) if messages else set()
        firsts = new_leads(store, [lead for lead in leads if lead not in cached], message_ids) \
            if messages and message_ids else set()
        groups = plan(model, leads, messages or {}, cached, firsts)
    frames, states, paths = [], [], {"partial": 0, "full": 0}
    for group, fresh in groups:
        frame, state = score_leads_state(store, model, as_of, group, activity=activity, state=True,
                                         fresh=fresh, cache=CACHE if fresh is not None else None)
        frames.append(frame)
        states.append(state)
        paths["full" if fresh is None else "partial"] += len(frame)
    # A group whose leads all have no valid_until comes back from PostgreSQL with ls_valid typed null:
    # promoted to the other groups' timestamp (a pass of a first visit and a full-path lead has both).
    state = pa.concat_tables(states, promote_options="default")
    state = state.append_column("model_version", pa.array([version] * state.num_rows, pa.string()))
    if len(frames) == 1:
        return frames[0], state, paths
    frame = pd.concat(frames, ignore_index=True).sort_values(["score", "lead_id"], ascending=[False, True],
                                                              ignore_index=True)
    return frame, state, paths


def save_cache(store: Store, conn, as_of: datetime, state: pa.Table) -> None:
    """Replace the scored leads' cache rows with their new state (:func:`score_live`'s, with its cache
    version), on ``conn`` (the transaction that writes their scores)."""
    if state is None or not state.num_rows:
        return
    leads = state.column("lead_id").to_pylist()
    store._fetch_in(conn, f"DELETE FROM {CACHE} WHERE lead_id IN {{ids}} RETURNING lead_id", leads)
    n = state.num_rows
    if store.dialect.name == "duckdb":
        stage = state.append_column("as_of", pa.array([as_of] * n, pa.timestamp("us")))
        conn.register("_ls_rule_state", stage)
        try:
            conn.execute(f"INSERT INTO {CACHE} ({', '.join(_COLS)}) SELECT lead_id, model_version, as_of, ls_valid, "
                         "ls_moving, ls_pts, ls_hits FROM _ls_rule_state")
        finally:
            conn.unregister("_ls_rule_state")
        return
    rows = list(zip(leads, state.column("model_version").to_pylist(), [as_of] * n, state.column("ls_valid").to_pylist(),
                    state.column("ls_moving").to_pylist(), state.column("ls_pts").to_pylist(),
                    state.column("ls_hits").to_pylist()))
    store._bulk_insert(conn, CACHE, _COLS, rows, conflict="plain")


def due_leads(store: Store, model: Model, as_of: datetime) -> list[str]:
    """The leads whose score time alone may have moved by ``as_of``, for the time scheduler: a cached
    edge (window, decay step, inactivity, stage ``within``, a message stored before its time) at or
    before ``as_of``, a half-life rule with hits (``moving``), or no cache row of this model version
    (never scored with it, or scored by the path that keeps no cache). Every other lead's score as of
    ``as_of`` is its cached one: nothing in its rules changes between its cache row's instant and the
    next edge, unless its account's traits changed since (a group call re-scores its caller only), when
    the model reads account traits."""
    from leadscore.engine.parquet import model_trait_keys

    account = ""
    if any(k.startswith("account.") for k in model_trait_keys(model)):
        account = (" OR EXISTS (SELECT 1 FROM resolved_traits t JOIN account_traits a ON a.account_id = t.value "
                   "JOIN events e ON e.message_id = a.message_id WHERE t.lead_id = p.lead_id AND t.key = 'account_id' "
                   "AND e.received_at > c.as_of)")
    rows = store.query(f"SELECT p.lead_id FROM population p LEFT JOIN {CACHE} c ON c.lead_id = p.lead_id "
                       f"WHERE c.lead_id IS NULL OR c.model_version <> ? OR c.moving OR c.valid_until <= ?{account} "
                       "ORDER BY p.lead_id", (cache_version(store, model), as_of))
    return [r[0] for r in rows]
