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

A merged re-score (DuckDB, :func:`score_live` with ``watermark``, ``merge_floor`` and ``batch``) goes
further and reads none of the lead's history: every state query counts the messages committed up to a
watermark (``events.seq``) and the cache row records it, with each rule's raw points, newest counted
occurrence and aggregate entries; a lead whose row is watermarked at or after the caller's floor (nothing
of its history missing from the row) and whose derived rules are all :func:`mergeable` takes the batch's
rows alone, each rule being its cached state plus the batch's part (``compile_model``'s ``merge``), if its
new messages come after the cached occurrences of the rank-dependent rules they can match (:func:`ranked_firsts`).

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
import pyarrow.compute as pc

from leadscore.engine.compile import ENGAGEMENT_TYPES, _rank_kind
from leadscore.engine.incremental import _ts
from leadscore.engine.score import STATE_COLUMNS, score_leads_state, to_naive_utc
from leadscore.model.schema import Model, Rule
from leadscore.store import Store
from leadscore.store.dialect import quote_literal

CACHE = "live_rule_cache"
CACHE_FORMAT = 2   # bump when what a cache row holds or how the engine derives it changes
# The cache's column of each state column (score.STATE_COLUMNS), in that order.
_CACHED = {"ls_pts": "pts", "ls_hits": "hits", "ls_valid": "valid_until", "ls_moving": "moving", "ls_raw": "raw",
           "ls_last": "last", "ls_last_activity": "last_activity", "ls_agg_rule": "agg_rule",
           "ls_agg_bucket": "agg_bucket", "ls_agg_value": "agg_value", "ls_agg_x": "agg_x"}
_COLS = ("lead_id", "model_version", "as_of", *(_CACHED[c] for c in STATE_COLUMNS), "seq")


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


def mergeable(rule: Rule) -> bool:
    """Whether a rule's value can be its cached state plus a batch's messages alone (the merged
    re-score, ``compile_model``'s ``merge``): every rule but video rules (a viewer's facts are rebuilt
    from the whole session), rules with a response-time multiplier (the reference event may be in the
    history) and rank-dependent rules (max_count, first/additional) counted ``per`` a key (each key's
    rank would need its own state). Trait rules are derived from the traits every time."""
    if rule.video:
        return False
    if rule.kind != "event":
        return True
    if any(m.response_time is not None for m in rule.multipliers):
        return False
    return rule.per is None or not _ranked(rule)


def _ranked(rule: Rule) -> bool:
    """An event rule whose occurrence's points depend on its rank (max_count, first/additional)."""
    first = float(rule.points)
    return _rank_kind(rule, first, float(rule.points if rule.additional is None else rule.additional)) != "once"


def ranked_rules(model: Model, kinds: Iterable[tuple[str, str | None]]) -> list[int]:
    """The rules whose points depend on rank (max_count, first/additional) that messages of these
    (type, event) kinds can match: the rules a merge must take in order (:func:`ranked_firsts`)."""
    moved = touched(model, kinds)
    return [i for i, r in enumerate(model.rules) if i in moved and r.kind == "event" and _ranked(r)]


def ranked_firsts(model: Model, ranked: list[int], batch: pa.Table) -> pa.Table | None:
    """Each lead's earliest batch message (``batch``: :func:`batch_rows`) of a kind that can match one of
    the ``ranked`` rules: a merge is exact only if it comes after the newest occurrence the lead's cache
    row counted for them (:func:`cache_rows` compares the two; the cached ranks are then unchanged).
    Which kinds read a ranked rule is asked once per distinct (type, event), the rest is Arrow (the
    pass's thread shares the GIL with the one applying the log: a Python datetime per lead and kind,
    compared in Python, cost ~0.04 s for 5,000 leads). None: no such message."""
    if not ranked or not batch.num_rows:
        return None
    rows = batch.select(["lead_id", "type", "event", "ts"]).filter(pc.is_valid(batch.column("lead_id")))
    kinds = rows.group_by(["type", "event"], use_threads=False).aggregate([]).to_pydict()
    reading = [(t, e) for t, e in zip(kinds["type"], kinds["event"]) if any(_reads(model.rules[i], t, e) for i in ranked)]
    if not reading:
        return None
    mask = None   # the rows of those kinds (a few: one comparison each)
    for t, e in reading:
        event = pc.is_null(rows.column("event")) if e is None else pc.equal(rows.column("event"), e)
        kind = pc.and_(pc.equal(rows.column("type"), t), event)
        mask = kind if mask is None else pc.or_(mask, kind)
    firsts = rows.filter(mask).group_by("lead_id", use_threads=False).aggregate([("ts", "min")])
    return pa.table({"lead_id": firsts.column("lead_id"), "first": firsts.column("ts_min")})


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
         cached: set[str], firsts: set[str] = frozenset(),
         merging: set[str] = frozenset(), traits_kept: bool = False) -> list[tuple[list[str], set[int] | None, bool]]:
    """Groups of leads, the rules to derive for each (None: all, the full path) and whether the group
    is merged (its derived rules from the cache's state and the batch alone, not the history).

    ``messages``: each lead's new messages as (type, event); ``cached``: the leads whose cache row can
    stand in for their other rules (:func:`cached_leads`); ``firsts``: the leads with no message but
    the batch's and no cache row at all (:func:`new_leads`: a missing row reads as zero points and
    hits), partial like cached leads, unless they would make a partial query of their own beside a
    full one: then they go with the full one (a pass never runs more queries for them). ``merging``:
    the cached leads and first visits whose cache row can take the batch's messages as they are
    (:func:`score_live` checks the watermark and the order); those whose derived rules are all
    :func:`mergeable` form one merged group, deriving the union of their rules (a rule none of a
    lead's messages can match merges nothing into it). A lead in ``merging`` with no new message at all
    (a time re-score) merges an empty batch: its rules that move with time alone (:func:`always_derived`)
    from its cached state. ``traits_kept``: no trait a merged lead's rules read can have changed since
    its cache row (:func:`traits_unchanged`): its trait rules are read from the cache too."""
    cached = cached | firsts
    always = frozenset(always_derived(model))
    able = {i for i, r in enumerate(model.rules) if mergeable(r)}
    trait_rules = {i for i, r in enumerate(model.rules) if r.kind == "trait"} if traits_kept else set()
    # A batch's leads share a few message kinds: what follows from a lead's kinds is worked out once per
    # set of kinds, not once per lead (5,000 leads a pass at 20,000 events/s).
    by_messages: dict[frozenset, tuple[frozenset[int] | None, bool]] = {}
    groups: dict[frozenset[int] | None, list[str]] = {}
    merging_leads: list[str] = []
    merged_sets: set[frozenset[int]] = set()
    time_mergeable = all(i in able for i in always)
    for lead in leads:
        mine = messages.get(lead)
        fresh: frozenset[int] | None = None
        if not mine and lead in merging and time_mergeable:
            # No new message (a time re-score): the cached state moved to this instant.
            merging_leads.append(lead)
            merged_sets.add(always)
            continue
        if lead in cached and mine:
            key = frozenset(mine)
            known = by_messages.get(key)
            if known is None:
                if all(t in ENGAGEMENT_TYPES for t, _ in key):
                    rules = frozenset(always | touched(model, key))
                    known = (rules, all(i in able for i in rules if i >= 0))
                else:
                    known = (None, False)
                by_messages[key] = known
            fresh, mergeable_kinds = known
            if fresh is not None and mergeable_kinds and lead in merging:
                merging_leads.append(lead)
                merged_sets.add(fresh)
                continue
        groups.setdefault(fresh, []).append(lead)
    merged_rules: set[int] = set().union(*(rules - trait_rules for rules in merged_sets))
    if len([k for k in groups if k is not None]) > 4:
        # Many different rule sets (a mixed batch): one query deriving their union, not one each.
        union = frozenset().union(*(k for k in groups if k is not None))
        merged = [lead for k, ls in groups.items() if k is not None for lead in ls]
        groups = {k: v for k, v in groups.items() if k is None}
        groups[union] = merged
    if firsts and None in groups:
        for k in [k for k, ls in groups.items() if k is not None and firsts.issuperset(ls)]:
            groups[None] += groups.pop(k)
    out = [(ls, None if k is None else set(k), False) for k, ls in groups.items()]
    if merging_leads:
        out.append((merging_leads, merged_rules, True))
    return out


def traits_unchanged(model: Model, batch: pa.Table) -> bool:
    """Whether a batch of track/page/screen messages (:func:`batch_rows`) leaves every trait the
    model's trait rules read as its leads' cache rows saw them: none carries a group id (the
    ``account_id`` trait) or a user agent (``browser``), the traits such messages write
    (``Store._apply_identity_and_traits``), and the model reads no account trait (another lead's group
    call changes those). Traits written any other way come with an identify (the full path) or an
    import, which drops the leads' cache rows (``Store.add_leads``)."""
    from leadscore.engine.parquet import model_trait_keys

    if any(k.startswith("account.") for k in model_trait_keys(model)):
        return False
    if batch.num_rows == 0:
        return True
    if pc.any(pc.is_valid(batch.column("group_id"))).as_py():
        return False
    context = batch.column("context").cast(pa.string())
    return not pc.any(pc.match_substring(pc.fill_null(context, ""), "userAgent")).as_py()


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
    return set(cache_rows(store, version, as_of, leads))


def cache_rows(store: Store, version: str, as_of: datetime, leads: list[str],
               floor: int | None = None, ranked: list[int] = (), firsts: pa.Table | None = None) -> dict[str, bool]:
    """:func:`cached_leads` as a dict; with ``floor`` (DuckDB), for each lead whether its row can take a
    merge: its watermark at least ``floor`` and, with ``firsts`` (:func:`ranked_firsts`), the lead's
    earliest new message of a kind the ``ranked`` rules read after the newest occurrence the row counted
    for them."""
    if not leads:
        return {}
    at = _ts(store.dialect, as_of)
    newest = (f"list_max(list_select(c.last, [{', '.join(str(i + 1) for i in ranked)}]))" if ranked
              else "CAST(NULL AS TIMESTAMP)")
    cols, join = "c.lead_id", ""
    if floor is not None:
        cols = f"c.lead_id, COALESCE(c.seq >= {int(floor)}, FALSE)"
        if firsts is not None:
            cols += f" AND (f.first IS NULL OR {newest} IS NULL OR f.first > {newest})"
            join = " LEFT JOIN _ls_ranked_firsts f ON f.lead_id = c.lead_id"
    with store.transaction() as conn:
        # The tests in SQL: only the ids and a flag come back.
        if join:
            conn.register("_ls_ranked_firsts", firsts)
        try:
            rows = store._fetch_in(conn, f"SELECT {cols} FROM {CACHE} c{join} WHERE c.lead_id IN {{ids}} AND "
                                         f"c.model_version = {quote_literal(version)} AND c.as_of <= {at} AND "
                                         f"(c.valid_until IS NULL OR c.valid_until > {at})", leads)
        finally:
            if join:
                conn.unregister("_ls_ranked_firsts")
    if floor is None:
        return {r[0]: False for r in rows}
    return {r[0]: bool(r[1]) for r in rows}


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
               message_ids: Mapping[str, set[str]] | None = None,
               watermark: int | None = None, merge_floor: int | None = None, batch: pa.Table | None = None,
               ) -> tuple[pd.DataFrame, pa.Table, dict[str, int]]:
    """Score ``leads`` as of ``as_of`` (the frame ``score_leads`` gives), partially where the cache
    allows (see the module doc); also each lead's new rule state for :func:`save_cache`, and how many
    leads took each path ({"partial": n, "full": m, "merged": k}). The state carries its cache version
    (one query a pass). ``message_ids``: each lead's new messages' ids, to find the batch's first visits
    (:func:`new_leads`; with ``batch`` and no ``message_ids``, read from the batch for the uncached leads).

    ``watermark``: the newest commit number (``events.seq``) to count: every path reads only messages
    committed up to it, and the cache rows written say so. Merging (DuckDB) also needs ``batch``, the
    batch's messages as rows of ``events`` with their resolved ``lead_id`` (the merged query reads them,
    not the log; its messages' order against the cache's: :func:`ranked_firsts`) and ``merge_floor``: the
    caller's promise that every message committed after it up to ``watermark`` is in ``batch`` or already
    in its lead's cache row (a cache row with a watermark at least ``floor`` then lacks exactly its lead's
    batch messages committed after it)."""
    as_of = to_naive_utc(as_of)
    version = cache_version(store, model)
    merging: set[str] = set()
    can_merge = (store.dialect.name == "duckdb" and batch is not None and watermark is not None
                 and merge_floor is not None)
    if leads is None:
        groups = [(None, None, False)]
    else:
        ranked = ranked_rules(model, {k for kinds in messages.values() for k in kinds}) if can_merge and messages else []
        rows = cache_rows(store, version, as_of, leads, merge_floor if can_merge else None, ranked,
                          ranked_firsts(model, ranked, batch) if can_merge else None) if messages or can_merge else {}
        cached = set(rows)
        uncached = [lead for lead in leads if lead not in cached]
        if message_ids is None and batch is not None and messages:
            asked = [lead for lead in uncached if lead in messages]   # (new_leads asks no more than this many)
            message_ids = batch_ids(batch, asked) if len(asked) <= NEW_LEADS_MAX else {}
        firsts = new_leads(store, uncached, message_ids) if messages and message_ids else set()
        if can_merge:
            merging = {lead for lead, able in rows.items() if able} | firsts
        groups = plan(model, leads, messages or {}, cached, firsts, merging,
                      traits_kept=can_merge and traits_unchanged(model, batch))
    frames, states, paths = [], [], {"partial": 0, "full": 0, "merged": 0}
    for group, fresh, merged in groups:
        mine = batch.filter(pc.is_in(batch.column("lead_id"), pa.array(group, pa.string()))) if merged else None
        frame, state = score_leads_state(store, model, as_of, group, activity=activity, state=True,
                                         fresh=fresh, cache=CACHE if fresh is not None else None,
                                         watermark=watermark, batch=mine)
        frames.append(frame)
        states.append(state)
        paths["merged" if merged else "full" if fresh is None else "partial"] += len(frame)
    # A group whose leads all have no valid_until comes back from PostgreSQL with ls_valid typed null:
    # promoted to the other groups' timestamp (a pass of a first visit and a full-path lead has both).
    state = pa.concat_tables(states, promote_options="default")
    state = state.append_column("model_version", pa.array([version] * state.num_rows, pa.string()))
    if len(frames) == 1:
        return frames[0], state, paths
    frame = pd.concat(frames, ignore_index=True).sort_values(["score", "lead_id"], ascending=[False, True],
                                                              ignore_index=True)
    return frame, state, paths


def save_cache(store: Store, conn, as_of: datetime, state: pa.Table, watermark: int | None = None) -> None:
    """Replace the scored leads' cache rows with their new state (:func:`score_live`'s, with its cache
    version), on ``conn`` (the transaction that writes their scores). ``watermark``: the commit number
    the state counted messages up to (:func:`score_live`'s); None: unknown, and the rows never take a merge."""
    if state is None or not state.num_rows:
        return
    n = state.num_rows
    seq = pa.array([watermark] * n, pa.int64())
    if store.dialect.name == "duckdb":
        stage = state.append_column("as_of", pa.array([as_of] * n, pa.timestamp("us"))).append_column("seq", seq)
        conn.register("_ls_rule_state", stage)
        try:   # the old rows by the staged ids (no id list through Python, nothing returned)
            conn.execute(f"DELETE FROM {CACHE} WHERE lead_id IN (SELECT lead_id FROM _ls_rule_state)")
            conn.execute(f"INSERT INTO {CACHE} ({', '.join(_COLS)}) SELECT lead_id, model_version, as_of, "
                         f"{', '.join(STATE_COLUMNS)}, seq FROM _ls_rule_state")
        finally:
            conn.unregister("_ls_rule_state")
        return
    leads = state.column("lead_id").to_pylist()
    store._fetch_in(conn, f"DELETE FROM {CACHE} WHERE lead_id IN {{ids}} RETURNING lead_id", leads)
    rows = list(zip(leads, state.column("model_version").to_pylist(), [as_of] * n,
                    *(state.column(c).to_pylist() for c in STATE_COLUMNS), seq.to_pylist()))
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


def batch_rows(store: Store, message_ids: list[str], seqs: Iterable[int] = ()) -> pa.Table:
    """The given messages as rows of ``events`` (every column) with their resolved ``lead_id``: what a
    merged re-score reads instead of the log (:func:`score_live`'s ``batch``), and what the live pass
    reads of its batch anyway (:func:`batch_messages`). DuckDB. ``seqs``: the commit numbers that stored
    exactly these messages (an ``IngestResult``'s), read by them instead: the newest row groups' seq
    ranges answer it (a join on 25,000 ids scans every stored message id)."""
    sql = ("SELECT e.*, COALESCE(mu.lead_id, e.user_id, ma.lead_id) AS lead_id FROM events e {join} "
           "LEFT JOIN identities mu ON mu.alias_id = e.user_id LEFT JOIN identities ma ON ma.alias_id = e.anonymous_id {where}")
    seqs = sorted({int(s) for s in seqs})
    if seqs:
        return store.query_arrow(sql.format(join="", where=f"WHERE e.seq BETWEEN {seqs[0]} AND {seqs[-1]} AND "
                                                         f"e.seq IN ({', '.join(map(str, seqs))})"))
    ids = list(message_ids)
    if len(ids) <= 4000:
        # A literal IN list of up to 1,000 ids is answered from the primary-key index (0.04 s for 300 ids
        # in 4.8M events, against 0.44 s for the join below, which scans the log's message ids).
        parts = [store.query_arrow(sql.format(join="", where=f"WHERE e.message_id IN ({', '.join(quote_literal(i) for i in ids[k:k + 1000])})"))
                 for k in range(0, len(ids), 1000)] or [store.query_arrow(sql.format(join="", where="WHERE FALSE"))]
        return pa.concat_tables(parts, promote_options="default")
    return store.query_analytic(sql.format(join="JOIN _ls_batch_ids b ON b.message_id = e.message_id", where=""),
                                {"_ls_batch_ids": pa.table({"message_id": pa.array(ids, pa.string())})})


def batch_messages(batch: pa.Table) -> dict[str, set[tuple[str, str | None]]]:
    """A batch's (:func:`batch_rows`) message kinds per lead, as :func:`score_live` takes them: each
    lead's (type, event) kinds. Grouped by Arrow, not a Python loop over the messages (the pass's thread
    shares the GIL with the thread applying the log)."""
    rows = batch.select(["lead_id", "type", "event"]).filter(pc.is_valid(batch.column("lead_id")))
    kinds = rows.group_by(["lead_id", "type", "event"], use_threads=False).aggregate([]).to_pydict()
    messages: dict[str, set[tuple[str, str | None]]] = {}
    for lead, type_, event in zip(kinds["lead_id"], kinds["type"], kinds["event"]):
        messages.setdefault(lead, set()).add((type_, event))
    return messages


def batch_ids(batch: pa.Table, leads: list[str]) -> dict[str, set[str]]:
    """The messageIds of ``leads`` in a batch (:func:`batch_rows`): what :func:`new_leads` asks of the
    few leads without a cache row, not every lead's."""
    if not leads:
        return {}
    rows = batch.select(["lead_id", "message_id"]).filter(pc.is_in(batch.column("lead_id"), pa.array(leads, pa.string())))
    listed = rows.group_by("lead_id", use_threads=False).aggregate([("message_id", "list")]).to_pydict()
    return {lead: set(mine) for lead, mine in zip(listed["lead_id"], listed["message_id_list"])}
