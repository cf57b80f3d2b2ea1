"""The scoring model compiled to one set-based SQL query (DuckDB, PostgreSQL or Spark SQL).

Shape of the query, as of an instant T:
  pop      the leads to score
  ev       their events with ts <= T, only those some rule reads, properties extracted once
  lt       one row per lead with the traits (and account traits) rules read
  vv       per lead × video facts (from leadscore.video), when a rule reads video
  r<i>_*   per rule: matching occurrences → points (first/additional, multipliers, decay, caps)
  hits     all rules' per-lead results stacked (lead_id, rule_idx, pts, hits)
  wide     pivoted back to one row per lead; groups, axes, total, tier, stage and grade on top.
With ``explain=True`` the same occurrence CTEs are selected row by row instead, so an explanation
is computed by exactly the query that scored the lead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime

from leadscore.engine.access import JSON_ACCESS, PropertyAccess
from leadscore.engine.conditions_sql import Value, condition_sql, where_sql
from leadscore.events.normalize import STORED_EVENT_COLUMNS, VIDEO_COLUMNS
from leadscore.model.schema import Model, Rule, StageWhen
from leadscore.store.dialect import Dialect, quote_literal

VIDEO_FACTS = ("video_id", "title", "category", "stage", "duration", "unique_seconds", "percent_watched",
               "watch_seconds", "replayed_seconds", "furthest_position", "sessions", "first_ts", "last_ts",
               "completed_25", "completed_50", "completed_75", "completed_80", "completed_100", "cta_clicks")
_DIRECT_EVENT_COLUMNS = {"event", "type", "name", "message_id", "user_id", "anonymous_id", "group_id"}
ENGAGEMENT_TYPES = ("track", "page", "screen")


@dataclass
class Sources:
    """The relations the compiled query reads; the defaults are the store's views."""

    events: str = "resolved_events"
    traits: str = "resolved_traits"
    account_traits: str = "account_traits"
    population: str = "population"
    catalog: str = "video_catalog"
    predictions: str = "lead_predictions"
    # How the events' properties/context are read: JSON text (the store) or typed columns (a Parquet
    # log whose properties/context are STRUCTs; see leadscore.engine.access). None: JSON text.
    access: PropertyAccess | None = None


@dataclass
class Compiled:
    sql: str
    rules: list[Rule]
    groups: list[str]
    explain: bool = False
    uses_video: bool = False
    uses_probability: bool = False
    reads_context: bool = False   # some rule reads a context.* field (the wide JSON context is needed)
    events_sql: str = ""          # the SELECT of the rule-read event rows (the ``ev`` CTE), for staging


def _seconds(td) -> str:
    return repr(float(td.total_seconds()))


def _safe(name: str) -> str:
    return re.sub(r"\W", "_", name).lower()


@dataclass
class _Ctx:
    model: Model
    d: Dialect
    as_of: str
    src: Sources
    at: datetime | None = None                                # the instant (as_of is its SQL literal)
    props: dict[str, str] = field(default_factory=dict)      # event field → ev column
    traits: dict[str, str] = field(default_factory=dict)     # trait key → lt text column
    ctes: list[tuple[str, str]] = field(default_factory=list)
    refs: dict[tuple[str, str], str] = field(default_factory=dict)
    rank_kinds: dict[int, str] = field(default_factory=dict)  # event rule index → its _rank_kind
    # The live path's rule state (compile_model's ``state``): every ``hits`` row also carries the rule's
    # unrounded, uncapped points ``raw`` and newest counted occurrence ``last``, and aggregate rules
    # their entries. ``merge``: the derived rules take the cache's state plus the batch's messages.
    state: bool = False
    merge: bool = False
    cache: str | None = None

    def extra(self, raw: str | None = None, last: str | None = None) -> str:
        """The ``raw`` and ``last`` columns of a ``hits`` row in state mode (nothing otherwise)."""
        if not self.state:
            return ""
        return (f", CAST({raw or 'NULL'} AS {self.d.double()}) AS raw, "
                f"CAST({last or 'NULL'} AS TIMESTAMP) AS last")

    def before(self, td) -> str:
        """The instant ``td`` before as-of, as a literal: ``age < W`` is written ``ts > (as_of - W)``,
        a constant comparison the scan can push down (and exact to the microsecond)."""
        return self.d.ts_literal((self.at - td).strftime("%Y-%m-%d %H:%M:%S.%f"))

    # ---- field resolution
    def event_field(self, name: str) -> Value:
        if name in _DIRECT_EVENT_COLUMNS:
            return Value(name, self.d.to_num(name))
        col = self.props.setdefault(name, f"p_{len(self.props)}")
        return Value(col, self.d.to_num(col))

    def event_field_expr(self, name: str) -> str:
        if name in _DIRECT_EVENT_COLUMNS:
            return f"e.{name}"
        access = self.src.access or JSON_ACCESS
        if name.startswith("context."):
            return access.text(self.d, "context", name[len("context."):], "e.")
        return access.text(self.d, "properties", name, "e.")

    def trait_field(self, name: str) -> Value:
        col = self.traits.setdefault(name, f"t_{len(self.traits)}")
        return Value(col, self.d.to_num(col))

    def video_field(self, name: str) -> Value:
        if name not in VIDEO_FACTS:
            raise ValueError(f"video rules read the facts {', '.join(VIDEO_FACTS)}; {name!r} is not one of them")
        if name.startswith("completed_"):
            text = f"CASE WHEN {name} THEN 'true' ELSE 'false' END"
            return Value(text, f"CASE WHEN {name} THEN 1.0 ELSE 0.0 END")
        if name in ("title", "category", "stage", "video_id"):
            return Value(name, self.d.to_num(name))
        return Value(f"CAST({name} AS {self.d.text()})",
                     f"CAST({name} AS {self.d.double()})")


def _match_parts(rule: Rule) -> list[str]:
    """The event-name / message-type part of a rule's match (any engagement when it names neither)."""
    parts = []
    if rule.event_names:
        parts.append(f"event IN ({', '.join(quote_literal(e) for e in rule.event_names)})")
    if rule.type is not None:
        types = [rule.type] if isinstance(rule.type, str) else rule.type
        parts.append(f"type IN ({', '.join(quote_literal(t) for t in types)})")
    if rule.page is not None:
        parts.append("type = 'page'")
    if not parts:
        parts.append(f"type IN ({', '.join(quote_literal(t) for t in ENGAGEMENT_TYPES)})")
    return parts


def _rule_source(ctx: _Ctx, rule: Rule) -> tuple[str, str, callable]:
    """(relation, match condition, field resolver) for an event-reading rule."""
    if rule.video:
        return "vv", "TRUE", ctx.video_field
    parts = _match_parts(rule)
    if rule.page is not None:
        from leadscore.model.conditions import Condition
        parts.append(condition_sql(ctx.d, Condition(glob=rule.page), ctx.event_field("path"), ctx.model.junk))
    return "ev", " AND ".join(parts), ctx.event_field


def _prefilter(rule: Rule) -> str | None:
    """The cheap part of a rule's match, used to keep only events some rule reads in `ev`."""
    if rule.video or rule.kind == "trait":
        return None
    return "(" + " AND ".join(_match_parts(rule)) + ")"


def _ev_filter(rules: list[Rule], events: set[str]) -> str:
    """The ``ev`` rows' condition: the union of the rules' cheap matches (:func:`_match_parts`) plus
    ``events`` (stage and response-time reference events). A match on event names alone or on message
    types alone joins one IN list of each, so the scan tests two lists per message instead of an OR of
    one test per rule (~10% of a whole-log run at 200,000 leads); a match combining both stays a conjunction."""
    names, types, other = set(events), set(), set()
    for rule in rules:
        if rule.video or rule.kind == "trait":
            continue
        if rule.event_names and rule.type is None and rule.page is None:
            names |= set(rule.event_names)
        elif not rule.event_names and (rule.type is None or rule.page is None):
            if rule.page is not None:
                types.add("page")
            elif rule.type is not None:
                types |= {rule.type} if isinstance(rule.type, str) else set(rule.type)
            else:
                types |= set(ENGAGEMENT_TYPES)
        else:
            other.add("(" + " AND ".join(_match_parts(rule)) + ")")
    conds = []
    if names:
        conds.append(f"event IN ({', '.join(quote_literal(e) for e in sorted(names))})")
    if types:
        conds.append(f"type IN ({', '.join(quote_literal(t) for t in sorted(types))})")
    return " OR ".join(conds + sorted(other)) or "FALSE"


def _window_sql(ctx: _Ctx, rule: Rule, ts: str) -> str:
    if rule.window is None:
        return "TRUE"
    return f"{ts} > {ctx.before(rule.window)}"


def _decay_sql(ctx: _Ctx, rule: Rule, ts: str) -> str:
    if rule.decay is None:
        return "1.0"
    age = ctx.d.seconds_between(ts, ctx.as_of)
    if rule.decay.half_life is not None:
        return f"{ctx.d.power('0.5', f'GREATEST({age}, 0) / {_seconds(rule.decay.half_life)}')}"
    whens = " ".join(f"WHEN {ts} < {ctx.before(s.after)} THEN {float(s.keep)!r}" for s in reversed(rule.decay.steps))
    return f"CASE {whens} ELSE 1.0 END"


def _multiplier_sql(ctx: _Ctx, rule: Rule, resolve) -> tuple[str, list[str]]:
    """(product of factors, extra LEFT JOINs for response-time references)."""
    factors, joins = [], []
    for k, m in enumerate(rule.multipliers):
        if m.property is not None:
            value = resolve(m.property)
            whens = " ".join(f"WHEN {value.text} = {quote_literal(v)} THEN {float(f)!r}" for v, f in m.values.items())
            factors.append(f"(CASE {whens} ELSE {float(m.default)!r} END)")
            continue
        rt = m.response_time
        if rt.since_property is not None:
            ref_ts = ctx.d.to_ts(resolve(rt.since_property).text)
        else:
            key = (rt.since_event, rt.match)
            if key not in ctx.refs:
                name = f"ref_{len(ctx.refs)}"
                ctx.refs[key] = name
                col = ctx.event_field(rt.match).text
                ctx.ctes.append((name, f"SELECT lead_id, {col} AS k, min(ts) AS ref_ts FROM ev "
                                       f"WHERE event = {quote_literal(rt.since_event)} AND {col} IS NOT NULL GROUP BY lead_id, {col}"))
            alias = f"j{k}"
            joins.append(f"LEFT JOIN {ctx.refs[key]} {alias} ON {alias}.lead_id = x.lead_id AND {alias}.k = x.{resolve(rt.match).text}")
            ref_ts = f"{alias}.ref_ts"
        delta = ctx.d.seconds_between(ref_ts, "x.ts")
        whens = " ".join(f"WHEN {delta} <= {_seconds(b.within)} THEN {float(b.factor)!r}" for b in m.bands)
        factors.append(f"(CASE WHEN {ref_ts} IS NULL THEN {float(m.default)!r} {whens} ELSE {float(m.default)!r} END)")
    return (" * ".join(factors) if factors else "1.0"), joins


def _cap(ctx: _Ctx, expr: str, cap: float | None) -> str:
    if cap is None:
        return expr
    return f"GREATEST(LEAST({expr}, {float(cap)!r}), {-float(cap)!r})"


def _event_rule(ctx: _Ctx, i: int, rule: Rule) -> tuple[str, str]:
    """One branch of the occurrence UNION: the rule's matching occurrences with their ranking key, the
    rule's point values, multipliers and decay, and how its points depend on an occurrence's rank
    (``_rank_kind``). Every event rule is a branch of one UNION ALL per rank kind, summed by one GROUP BY
    (``_event_rules``): a per-rule window and aggregate cost the planner and the executor a few
    operators each, which for ~30 rules was most of a small re-score."""
    rel, match, resolve = _rule_source(ctx, rule)
    cond = where_sql(ctx.d, rule.where, resolve, ctx.model.junk)
    key = resolve(rule.per).text if rule.per else ("video_id" if rule.video else "'_'")
    ts, msg = ("last_ts", "video_id") if rule.video else ("ts", "message_id")
    mult, joins = _multiplier_sql(ctx, rule, resolve)
    decay = _decay_sql(ctx, rule, f"x.{ts}")
    first = float(rule.points)
    additional = float(rule.points if rule.additional is None else rule.additional)
    d = ctx.d
    cap = f"CAST({float(rule.cap)!r} AS {d.double()})" if rule.cap is not None else f"CAST(NULL AS {d.double()})"
    limit = str(int(rule.max_count)) if rule.max_count else "CAST(NULL AS INTEGER)"
    return (f"SELECT {i} AS rule_idx, x.lead_id, CAST(x.{msg} AS {d.text()}) AS message_id, x.{ts} AS ts, "
            f"CAST({key} AS {d.text()}) AS k, CAST({first!r} AS {d.double()}) AS p_first, "
            f"CAST({additional!r} AS {d.double()}) AS p_add, {limit} AS p_max, {cap} AS p_cap, "
            f"CAST({mult} AS {d.double()}) AS mult, CAST({decay} AS {d.double()}) AS dec "
            f"FROM {rel} x {' '.join(joins)} WHERE {match} AND {cond} AND {_window_sql(ctx, rule, f'x.{ts}')}"), \
        _rank_kind(rule, first, additional)


def _rank_kind(rule: Rule, first: float, additional: float) -> str:
    """How a rule's points depend on an occurrence's rank within its (lead, key):
    ``limited``: max_count keeps the first N (a rank per occurrence: the window);
    ``first``: the first occurrence earns ``points``, the others ``additional`` (only the first's
    multiplier and decay must be known: an ordered first-of aggregate, no window);
    ``once``: every occurrence earns the same points (no rank at all)."""
    if rule.max_count is not None:
        return "limited"
    return "first" if additional != first else "once"


def _event_rules(ctx: _Ctx, branches: list[tuple[str, str]], explain: bool = False, top: int = 0) -> str:
    """The CTEs of all event rules together; returns their ``hits`` branches (lead, rule, points, hits).

    Only max_count rules go through the window (``row_number``). First/additional rules sum by key:
    points = additional × Σ(multiplier × decay) + (first − additional) × the first occurrence's
    multiplier × decay, the first taken by an ordered aggregate (``Dialect.first_by``); a sort of every
    occurrence was the largest operator of a full run. An explanation (``explain``) needs each
    occurrence's own points, so there every rank-dependent rule takes the window. ``top``: the largest
    max_count of the rules (DuckDB ranks max_count rules by a top-N aggregate of that size)."""
    d = ctx.d
    kinds = {"limited": [], "first": [], "once": []}
    for sql, kind in branches:
        kinds["limited" if explain and kind == "first" else kind].append(sql)
    if ctx.merge:
        return _merge_event_rules(ctx, kinds, top)
    total = d.round("sum(pts)", 4)
    capped = f"CASE WHEN p_cap IS NULL THEN {total} ELSE GREATEST(LEAST({total}, p_cap), -p_cap) END"
    parts, hits = [], []
    if kinds["limited"]:
        ctx.ctes.append(("ev_occ", " UNION ALL ".join(kinds["limited"])))
        if d.name == "duckdb" and not explain and top:
            # The first max_count occurrences by an ordered top-N aggregate (arg_min with N: the
            # smallest N keys' values, in key order) instead of a window sorting every occurrence:
            # points = additional × Σ of the first p_max + (first − additional) × the first one's.
            ctx.ctes.append(("ev_lim", f"SELECT lead_id, rule_idx, p_cap, p_add * list_sum(l[1:p_max]) + "
                                       f"(p_first - p_add) * l[1] AS pts, least(len(l), p_max) AS n{', lt' if ctx.state else ''} FROM ("
                                       f"SELECT lead_id, rule_idx, p_cap, p_first, p_add, p_max, "
                                       f"arg_min(mult * dec, (ts, message_id), {int(top)}) AS l{', max(ts) AS lt' if ctx.state else ''} "
                                       f"FROM ev_occ GROUP BY lead_id, rule_idx, k, p_cap, p_first, p_add, p_max) q"))
            hits.append(f"SELECT lead_id, rule_idx, {capped} AS pts, CAST(sum(n) AS BIGINT) AS hits{ctx.extra('sum(pts)', 'max(lt)')} "
                        "FROM ev_lim GROUP BY lead_id, rule_idx, p_cap")
        else:
            parts.append("SELECT o.*, row_number() OVER (PARTITION BY lead_id, rule_idx, k ORDER BY ts, message_id) AS rn "
                         "FROM ev_occ o")
    if kinds["once"]:
        ctx.ctes.append(("ev_once", " UNION ALL ".join(kinds["once"])))
        parts.append("SELECT o.*, 1 AS rn FROM ev_once o")
    if parts:
        ctx.ctes.append(("ev_rank", " UNION ALL ".join(parts)))
        # points: first / additional by rank, times multipliers and decay; max_count drops the rest
        ctx.ctes.append(("ev_pts", "SELECT rule_idx, lead_id, message_id, ts, "
                                   "(CASE WHEN rn = 1 THEN p_first ELSE p_add END) * mult * dec AS pts, p_cap "
                                   "FROM ev_rank WHERE p_max IS NULL OR rn <= p_max"))
        hits.append(f"SELECT lead_id, rule_idx, {capped} AS pts, count(*) AS hits{ctx.extra('sum(pts)', 'max(ts)')} "
                    "FROM ev_pts GROUP BY lead_id, rule_idx, p_cap")
    if kinds["first"]:
        ctx.ctes.append(("ev_first", " UNION ALL ".join(kinds["first"])))
        first = d.first_by("mult * dec", ["ts", "message_id"])
        ctx.ctes.append(("ev_first_k", f"SELECT lead_id, rule_idx, p_cap, p_add * sum(mult * dec) + (p_first - p_add) * {first} AS pts, "
                                       f"count(*) AS n{', max(ts) AS lt' if ctx.state else ''} FROM ev_first "
                                       "GROUP BY lead_id, rule_idx, k, p_cap, p_first, p_add"))
        hits.append(f"SELECT lead_id, rule_idx, {capped} AS pts, CAST(sum(n) AS BIGINT) AS hits{ctx.extra('sum(pts)', 'max(lt)')} "
                    "FROM ev_first_k GROUP BY lead_id, rule_idx, p_cap")
    return " UNION ALL ".join(hits)


def _merge_event_rules(ctx: _Ctx, kinds: dict[str, list[str]], top: int) -> str:
    """The batch's part of merged event rules (``compile_model``'s ``merge``): per lead and rule, the
    points its new occurrences add (``pts`` and ``raw``: unrounded, uncapped) and how many count
    (``hits``), given the cached hits before them: a max_count rule keeps only the room left
    (``p_max`` minus the cached hits), and a first/additional rule pays ``points`` for a first
    occurrence only when the cache holds none. The wide row adds the cache's raw points (scaled by a
    half-life's decay since the cache's instant) and applies rounding and the cap. Exact when the new
    occurrences come after every cached one (:func:`leadscore.engine.partial.plan` checks that for
    the rules whose points depend on rank) and the rule has no ``per`` key (``partial.mergeable``)."""
    d = ctx.d
    old = f"COALESCE(c.hits[q.rule_idx + 1], 0)"
    parts = []
    if kinds["once"]:
        ctx.ctes.append(("ev_once", " UNION ALL ".join(kinds["once"])))
        parts.append(f"SELECT lead_id, rule_idx, sum(p_first * mult * dec) AS pts, count(*) AS hits"
                     f"{ctx.extra('sum(p_first * mult * dec)', 'max(ts)')} FROM ev_once GROUP BY lead_id, rule_idx")
    if kinds["limited"]:
        ctx.ctes.append(("ev_occ", " UNION ALL ".join(kinds["limited"])))
        room = f"GREATEST(q.p_max - {old}, 0)"
        raw = (f"q.p_add * COALESCE(list_sum(q.l[1:{room}]), 0) + CASE WHEN {old} = 0 "
               "THEN (q.p_first - q.p_add) * q.l[1] ELSE 0 END")   # no cached hit: the room is p_max >= 1
        parts.append(f"SELECT q.lead_id, q.rule_idx, {raw} AS pts, LEAST(len(q.l), {room}) AS hits{ctx.extra(raw, 'q.lt')} FROM ("
                     f"SELECT lead_id, rule_idx, p_first, p_add, p_max, arg_min(mult * dec, (ts, message_id), {int(top)}) AS l, "
                     f"max(ts) AS lt FROM ev_occ GROUP BY lead_id, rule_idx, p_first, p_add, p_max) q "
                     f"LEFT JOIN {ctx.cache} c ON c.lead_id = q.lead_id")
    if kinds["first"]:
        ctx.ctes.append(("ev_first", " UNION ALL ".join(kinds["first"])))
        first = d.first_by("mult * dec", ["ts", "message_id"])
        raw = f"q.p_add * q.s + CASE WHEN {old} = 0 THEN (q.p_first - q.p_add) * q.f ELSE 0 END"
        parts.append(f"SELECT q.lead_id, q.rule_idx, {raw} AS pts, q.n AS hits{ctx.extra(raw, 'q.lt')} FROM ("
                     f"SELECT lead_id, rule_idx, p_first, p_add, sum(mult * dec) AS s, {first} AS f, count(*) AS n, "
                     f"max(ts) AS lt FROM ev_first GROUP BY lead_id, rule_idx, p_first, p_add) q "
                     f"LEFT JOIN {ctx.cache} c ON c.lead_id = q.lead_id")
    return " UNION ALL ".join(parts)


def _aggregate_rule(ctx: _Ctx, i: int, rule: Rule) -> str:
    rel, match, resolve = _rule_source(ctx, rule)
    cond = where_sql(ctx.d, rule.where, resolve, ctx.model.junk)
    agg = rule.aggregate
    ts = "last_ts" if rule.video else "ts"
    msg = "video_id" if rule.video else "message_id"
    measure, target = agg.measure

    def field_expr(name: str, numeric: bool) -> str:
        if name == "day":
            return ctx.d.day_of(ts)
        v = resolve(name)
        return v.num if numeric else v.text

    value = {"count": "1", "count_distinct": field_expr(target, False) if target else "1",
             "sum": field_expr(target, True) if target else "1", "max": field_expr(target, True) if target else "1"}[measure]
    bucket = field_expr(agg.bucket, False) if agg.bucket else "'_'"
    ctx.ctes.append((f"r{i}_m", f"SELECT lead_id, {msg} AS message_id, {ts} AS ts, {value} AS v, {bucket} AS b "
                                f"FROM {rel} WHERE {match} AND {cond} AND {_window_sql(ctx, rule, ts)}"))
    fn = {"count": "count(v)", "count_distinct": "count(DISTINCT v)", "sum": "sum(v)", "max": "max(v)"}[measure]
    if ctx.state:
        # The rule's state: its entries, per bucket the measure so far (count, sum, max) or each
        # distinct value (count_distinct), from which the buckets' values follow and to which a
        # batch's entries add (merge).
        d = ctx.d
        if measure == "count_distinct":
            entries = (f"SELECT DISTINCT lead_id, CAST(b AS {d.text()}) AS b, CAST(v AS {d.text()}) AS v, "
                       f"CAST(NULL AS {d.double()}) AS x FROM r{i}_m")
        else:
            entries = (f"SELECT lead_id, CAST(b AS {d.text()}) AS b, CAST(NULL AS {d.text()}) AS v, CAST({fn} AS {d.double()}) AS x "
                       f"FROM r{i}_m GROUP BY lead_id, b")
        if ctx.merge:
            both = (f"SELECT lead_id, b, v, x FROM ({entries}) n UNION ALL SELECT lead_id, b, v, x FROM ls_c_agg "
                    f"WHERE r = {i}")
            entries = (f"SELECT DISTINCT lead_id, b, v, x FROM ({both}) m" if measure == "count_distinct" else
                       f"SELECT lead_id, b, v, {'max' if measure == 'max' else 'sum'}(x) AS x FROM ({both}) m "
                       "GROUP BY lead_id, b, v")
        ctx.ctes.append((f"r{i}_e", entries))
        val = "count(DISTINCT v)" if measure == "count_distinct" else ("max(x)" if measure == "max" else "sum(x)")
        ctx.ctes.append((f"r{i}_b", f"SELECT lead_id, b, {val} AS val FROM r{i}_e GROUP BY lead_id, b"))
    else:
        ctx.ctes.append((f"r{i}_b", f"SELECT lead_id, b, {fn} AS val FROM r{i}_m GROUP BY lead_id, b"))
    ctx.ctes.append((f"r{i}_v", f"SELECT lead_id, max(val) * {float(agg.scale)!r} AS val FROM r{i}_b GROUP BY lead_id"))
    checks = []
    if agg.min is not None:
        checks.append(f"val >= {float(agg.min)!r}")
    if agg.max_value is not None:
        checks.append(f"val <= {float(agg.max_value)!r}")
    if rule.bands:
        bands = sorted(rule.bands, key=lambda b: b.min, reverse=True)
        pts = "CASE " + " ".join(f"WHEN val >= {float(b.min)!r} THEN {float(b.points)!r}" for b in bands) + " ELSE 0.0 END"
    else:
        pts = repr(float(rule.points))
    qualifies = " AND ".join(checks) if checks else "TRUE"
    ctx.ctes.append((f"r{i}_q", f"SELECT lead_id, {pts} AS pts FROM r{i}_v WHERE {qualifies} AND val IS NOT NULL"))
    ctx.ctes.append((f"r{i}_p", f"SELECT m.lead_id, m.message_id, m.ts, 0.0 AS pts FROM r{i}_m m "
                                f"WHERE m.lead_id IN (SELECT lead_id FROM r{i}_q WHERE pts <> 0)"))
    return f"SELECT lead_id, {i} AS rule_idx, {_cap(ctx, 'pts', rule.cap)} AS pts, 1 AS hits{ctx.extra()} FROM r{i}_q WHERE pts <> 0"


def _inactivity_rule(ctx: _Ctx, i: int, rule: Rule) -> str:
    rel, match, resolve = _rule_source(ctx, rule)
    cond = where_sql(ctx.d, rule.where, resolve, ctx.model.junk)
    ts = "last_ts" if rule.video else "ts"
    last = f"SELECT lead_id, max({ts}) AS last_ts FROM {rel} WHERE {match} AND {cond} GROUP BY lead_id"
    if ctx.merge:
        # The batch's newest match or the cached one, whichever is later.
        last = (f"SELECT lead_id, max(last_ts) AS last_ts FROM ({last} UNION ALL SELECT c.lead_id, "
                f"c.last[{i + 1}] FROM {ctx.cache} c WHERE c.lead_id IN (SELECT lead_id FROM pop)) x GROUP BY lead_id")
    ctx.ctes.append((f"r{i}_l", last))
    never = "l.last_ts IS NULL" if rule.inactivity.if_never else "FALSE"
    idle = f"l.last_ts <= {ctx.before(rule.inactivity.after)}"
    ctx.ctes.append((f"r{i}_p", f"SELECT pop.lead_id, NULL AS message_id, l.last_ts AS ts, {float(rule.points)!r} AS pts "
                                f"FROM pop LEFT JOIN r{i}_l l ON l.lead_id = pop.lead_id WHERE {never} OR {idle}"))
    out = f"SELECT lead_id, {i} AS rule_idx, {_cap(ctx, 'pts', rule.cap)} AS pts, 1 AS hits{ctx.extra(None, 'ts')} FROM r{i}_p"
    if ctx.state:
        # Every lead's newest match is state, whether or not it earns the points now.
        out += (f" UNION ALL SELECT l.lead_id, {i} AS rule_idx, 0.0 AS pts, 0 AS hits{ctx.extra(None, 'l.last_ts')} "
                f"FROM r{i}_l l WHERE NOT EXISTS (SELECT 1 FROM r{i}_p p WHERE p.lead_id = l.lead_id)")
    return out


def _trait_rule(ctx: _Ctx, i: int, rule: Rule) -> str:
    cond = where_sql(ctx.d, rule.trait, ctx.trait_field, ctx.model.junk)
    ctx.ctes.append((f"r{i}_p", f"SELECT lead_id, NULL AS message_id, NULL AS ts, {float(rule.points)!r} AS pts FROM lt WHERE {cond}"))
    return f"SELECT lead_id, {i} AS rule_idx, {_cap(ctx, 'pts', rule.cap)} AS pts, 1 AS hits{ctx.extra()} FROM r{i}_p"


def _pivot_sql(d: Dialect, derived_idx: list[int], live_flags: list[int], state: bool = False) -> str:
    """One row per lead of ``pop`` with each rule's points ``r{i}`` and hits ``h{i}`` and each stage
    flag's count ``f{k}``, from the stacked ``hits`` rows, which hold at most one row per (lead, rule):
    every branch is one rule's rows grouped by lead (an event rule by lead and its constant cap).

    DuckDB: each lead's rows as three lists, each rule's value found by its position. A GROUP BY with
    a sum(CASE ...) per rule and column (53 aggregates for the playbook's 26 rules) made each stacked
    row update every aggregate: 1.41 of a 9M-message lead range's 11.7 CPU-s, against 0.63 CPU-s for
    the lists (DuckDB's profiler, JSON log, bench/RESULTS.md session 8). Elsewhere the portable CASE
    pivot (CASE rather than FILTER: DuckDB ran a wide FILTER pivot about 3x slower). ``state``: also
    each rule's ``raw`` points ``x{i}`` and newest occurrence ``t{i}`` (the ``hits`` rows carry them)."""
    cols = [c for i in derived_idx for c in ((f"r{i}", i, "pts"), (f"h{i}", i, "hits"))] \
        + [(f"f{k}", -(k + 1), "hits") for k in live_flags]
    if state:
        cols += [c for i in derived_idx for c in ((f"x{i}", i, "raw"), (f"t{i}", i, "last"))]
    if not cols:
        return "SELECT pop.lead_id FROM pop"
    if d.name == "duckdb":
        slot = {i: f"q{n}" for n, i in enumerate(dict.fromkeys(i for _, i, _ in cols))}
        pos = ", ".join(f"list_position(h.ix, {i}) AS {q}" for i, q in slot.items())
        item = {"pts": "COALESCE(ps[{q}], 0)", "hits": "CAST(COALESCE(hs[{q}], 0) AS BIGINT)",
                "raw": "rs[{q}]", "last": "lt[{q}]"}
        sel = ", ".join(f"{item[c].format(q=slot[i])} AS {name}" for name, i, c in cols)
        extra = ", list(raw) AS rs, list(last) AS lt" if state else ""
        lists = f"SELECT lead_id, list(rule_idx) AS ix, list(pts) AS ps, list(hits) AS hs{extra} FROM hits GROUP BY lead_id"
        return (f"SELECT lead_id, {sel} FROM (SELECT pop.lead_id, h.ps, h.hs{', h.rs, h.lt' if state else ''}, {pos} FROM pop "
                f"LEFT JOIN ({lists}) h ON h.lead_id = pop.lead_id) w")
    item = {"pts": "COALESCE(sum(CASE WHEN h.rule_idx = {i} THEN h.pts END), 0)",
            "hits": "CAST(COALESCE(sum(CASE WHEN h.rule_idx = {i} THEN h.hits END), 0) AS BIGINT)",
            "raw": "sum(CASE WHEN h.rule_idx = {i} THEN h.raw END)", "last": "max(CASE WHEN h.rule_idx = {i} THEN h.last END)"}
    sel = ", ".join(f"{item[c].format(i=i)} AS {name}" for name, i, c in cols)
    return f"SELECT pop.lead_id, {sel} FROM pop LEFT JOIN hits h ON h.lead_id = pop.lead_id GROUP BY pop.lead_id"


def _stage_sql(ctx: _Ctx, when: StageWhen | None, stage_conds: dict[str, str], flags: list[str]) -> str:
    if when is None:
        return "TRUE"
    parts = []
    for axis in ("score", "fit", "engagement"):
        c = getattr(when, axis)
        if c is not None:
            parts.append(condition_sql(ctx.d, c, Value(f"CAST({axis} AS {ctx.d.text()})", axis), ctx.model.junk))
    for g, c in (when.groups or {}).items():
        col = f"g_{_safe(g)}"
        parts.append(condition_sql(ctx.d, c, Value(col, col), ctx.model.junk))
    if when.trait is not None:
        parts.append(where_sql(ctx.d, when.trait, ctx.trait_field, ctx.model.junk))
    if when.event:
        flags.append((when.event, when.within))
        parts.append(f"f{len(flags) - 1} > 0")
    if when.stage:
        parts.append(stage_conds[when.stage])
    if when.probability is not None:
        parts.append(condition_sql(ctx.d, when.probability, Value(f"CAST(probability AS {ctx.d.text()})", "probability"), ctx.model.junk))
    return "(" + " AND ".join(parts) + ")" if parts else "TRUE"


SCOPED = Sources(events="s_events", traits="s_traits")


def scoped_sources(dialect: Dialect, ids: list[str], context: bool = True, video: bool = True) -> list[tuple[str, str]]:
    """Sources restricted to the messages and traits of some leads, for targeted re-scores.

    ``ids`` holds the leads and every alias (anonymous or aliased id) that resolves to one of them.
    The CTEs are the store's ``resolved_events`` / ``resolved_traits`` views (migration 0001) with the
    id filter on the base tables, where the scan can apply it, instead of above the identity join: a
    message resolves to lead L only through a userId that is L or an alias of L, or (without userId)
    an anonymousId that is an alias of L, so both filters keep all of L's rows. The outer lead filter
    still applies, so the result is exactly the views' rows. Without ``context`` (no rule reads it),
    DuckDB leaves the wide JSON context and the columns no rule reads unfetched: a lead's messages are
    scattered over the log, and fetching a scattered row costs per column. Without ``video`` (no video
    rule is derived) the typed video columns stay unfetched too: the UNION below compares whole rows, so
    every column it selects is fetched whether read or not (a live pass of 50 leads' page rules, 20,000-
    lead store: its index scan 40 -> 17 µs a message). The rows stay distinct: message_id is kept."""
    # Literal lists here (the only two): DuckDB answers an IN list on an indexed column from the index
    # (DuckDBStore sets index_scan_percentage for that); a semi-join would scan the whole log.
    in_ids = f"({', '.join(quote_literal(i) for i in ids) or 'NULL'})"
    keep = [c for c in STORED_EVENT_COLUMNS
            if c not in ("previous_id", "original_ts", "sent_at") and (context or c != "context")
            and (video or c not in VIDEO_COLUMNS)]
    cols = ", ".join(keep + ["seq"])   # seq: a watermark's filter (compile_model's ``watermark``)
    if dialect.name == "postgres":
        # A bitmap index scan takes the second condition too; UNION would hash every row's JSON.
        rows = (f"SELECT {cols} FROM events WHERE user_id IN {in_ids} UNION ALL "
                f"SELECT {cols} FROM events WHERE user_id IS NULL AND anonymous_id IN {in_ids}")
    else:
        # Each branch has its IN list as its only condition, so DuckDB can answer it from the index
        # (with a second condition it scans the log); UNION drops the rows both branches find, and the
        # rows of other leads' userIds that carry one of these anonymousIds fail the lead filter.
        rows = (f"SELECT {cols} FROM events WHERE user_id IN {in_ids} UNION "
                f"SELECT {cols} FROM events WHERE anonymous_id IN {in_ids}")
    ctes = [
        ("s_ids", dialect.string_relation("id", ids)),
        ("s_events", f"SELECT e.*, COALESCE(mu.lead_id, e.user_id, ma.lead_id) AS lead_id FROM ({rows}) e "
                     "LEFT JOIN identities mu ON mu.alias_id = e.user_id "
                     "LEFT JOIN identities ma ON ma.alias_id = e.anonymous_id"),
        ("s_traits", resolved_traits_sql("t.lead_id IN (SELECT id FROM s_ids)")),
    ]
    return ctes


def resolved_traits_sql(where: str) -> str:
    """The store's ``resolved_traits`` view (migration 0001) over the trait rows ``where`` keeps, the
    condition applied before the newest-row window: the view's own window ranks every lead's rows
    before an outer lead filter can apply (20,000 leads: 200,000 rows ranked for a pass of 2,500
    leads, 0.08 s of a 0.35 s live re-score). ``where`` must keep or drop whole (lead, key) partitions:
    a condition on ``t.lead_id`` (an alias's rows then fail the outer filter) or on the resolved
    lead, ``COALESCE(m.lead_id, t.lead_id)``."""
    return ("SELECT lead_id, key, value, num FROM (SELECT COALESCE(m.lead_id, t.lead_id) AS lead_id, t.key, "
            "t.value, t.num, row_number() OVER (PARTITION BY COALESCE(m.lead_id, t.lead_id), t.key "
            "ORDER BY t.ts DESC, t.message_id DESC) AS rn FROM lead_traits t "
            f"LEFT JOIN identities m ON m.alias_id = t.lead_id WHERE {where}) x WHERE rn = 1")


def compile_model(model: Model, dialect: Dialect, as_of: datetime, leads: list[str] | None = None,
                  sources: Sources | None = None, explain: bool = False, scope: list[str] | None = None,
                  activity: bool = False, staged_events: str | None = None, ordered: bool = True,
                  fresh: set[int] | None = None, cache: str | None = None, state: bool = False,
                  leads_table: str | None = None, watermark: int | None = None, merge: bool = False,
                  batch_table: str | None = None) -> Compiled:
    """``scope``: with ``leads``, every id of those leads (see :func:`scoped_sources`) — the query then
    reads only their messages and traits. ``activity``: add ``last_activity`` (the lead's newest
    message at or before the instant). ``staged_events`` (DuckDB): a table already holding
    ``Compiled.events_sql``'s rows; each rule then scans it (a compressed table) instead of the query
    materialising the rows once for all rules, which spills to disk when they outgrow memory.
    ``ordered=False``: leave the rows unordered (a caller that merges several queries' rows sorts once).
    ``leads_table``: a relation (one column, lead_id) holding ``leads``, which the caller registers,
    instead of the list written into the SQL (for thousands of leads DuckDB parses the literal list
    for ~10% of the query's time).
    ``state`` (the live path's rule cache, :mod:`leadscore.engine.partial`): three more columns, each
    rule's points ``ls_pts`` and hits ``ls_hits`` (rule order, then the stage event flags' counts) and
    ``ls_valid``, the first instant from the as-of on at which time alone can change one of the
    derived rules (:func:`_valid_until_sql`) or a message received by the as-of but dated after it
    counts (NULL: never; the events relation needs ``received_at``), and ``ls_moving``: a half-life rule has
    hits, so the score moves at every instant. ``fresh`` with ``cache``: only the rules
    whose index is in ``fresh`` (and the stage event flags ``-(k + 1)`` in it) are derived from the
    events; every other rule's points and hits are read from ``cache`` (lead_id, pts, hits,
    valid_until: an earlier ``state`` query's columns), and everything above the rules (groups, axes,
    tiers, stages, grade) is this same query. The state also holds what a later batch needs to be
    merged in without the lead's history: each rule's unrounded, uncapped points ``ls_raw`` and newest
    counted occurrence ``ls_last``, the aggregate rules' entries ``ls_agg_*`` (rule, bucket, value,
    measure) and the lead's newest message ``ls_last_activity``.
    ``watermark``: count only the messages whose commit number (``events.seq``) is at most this (the
    cache row then says exactly which messages it holds). ``merge`` (DuckDB, with ``fresh``, ``cache``,
    ``state``, ``leads`` and ``batch_table``, the batch's messages as rows of ``events`` with their
    resolved ``lead_id``): every derived rule but the trait rules is the cache's state plus the batch's
    messages alone (those committed after the lead's cache row's watermark), not the lead's history
    (:mod:`leadscore.engine.partial`)."""
    prefix: list[tuple[str, str]] = []
    if leads is not None:
        # The lead list once, as a relation, not an IN list in every filter (which the planner pays for each time).
        prefix.append(("ls_leads", f"SELECT lead_id FROM {leads_table}" if leads_table
                       else dialect.string_relation("lead_id", list(leads))))
    scoped = scope is not None and leads is not None and sources is None
    src = SCOPED if scoped else (sources or Sources())
    if leads is not None and sources is None and not scoped:
        # The store's traits of these leads only, resolved before the newest-row window (resolved_traits_sql).
        prefix.append(("l_traits", resolved_traits_sql("COALESCE(m.lead_id, t.lead_id) IN (SELECT lead_id FROM ls_leads)")))
        src = replace(src, traits="l_traits")
    as_of_sql = dialect.ts_literal(as_of.strftime("%Y-%m-%d %H:%M:%S.%f"))
    if merge and (not state or cache is None or leads is None or batch_table is None or scoped or sources is not None
                  or dialect.name != "duckdb"):
        raise ValueError("merge is the live path's DuckDB query: it needs state, cache, leads and batch_table")
    wm = "" if watermark is None else f" AND (e.seq IS NULL OR e.seq <= {int(watermark)})"
    if merge:
        # The batch's messages not yet in their leads' cache rows (the lead filter applies where read).
        prefix.append(("m_events", f"SELECT e.* FROM {batch_table} e LEFT JOIN {cache} c ON c.lead_id = e.lead_id "
                                   f"WHERE e.seq > COALESCE(c.seq, -1){wm}"))
        src = replace(src, events="m_events")
        wm = ""
    if state and fresh is not None:
        # The cached aggregate entries of these leads, one row each.
        prefix.append(("ls_c_agg", f"SELECT lead_id, unnest(agg_rule) AS r, unnest(agg_bucket) AS b, unnest(agg_value) AS v, "
                                   f"unnest(agg_x) AS x FROM {cache} WHERE lead_id IN (SELECT lead_id FROM ls_leads)"))
    ctx = _Ctx(model, dialect, as_of_sql, src, at=as_of, state=state, merge=merge, cache=cache)
    lead_filter = ""
    if leads is not None:
        lead_filter = " AND lead_id IN (SELECT lead_id FROM ls_leads)"

    # Rules first: they decide which properties and traits the base CTEs extract.
    rule_sql, flags, event_branches = [], [], []
    if (fresh is None) != (cache is None) or (state and explain):
        raise ValueError("fresh goes with cache, and an explanation has no state")
    for i, rule in enumerate(model.rules):
        if fresh is not None and i not in fresh:
            continue  # read from the cache
        kind = rule.kind
        if kind == "trait":
            rule_sql.append(_trait_rule(ctx, i, rule))
        elif kind == "aggregate":
            rule_sql.append(_aggregate_rule(ctx, i, rule))
        elif kind == "inactivity":
            rule_sql.append(_inactivity_rule(ctx, i, rule))
        else:
            event_branches.append(_event_rule(ctx, i, rule))
            ctx.rank_kinds[i] = event_branches[-1][1]
    if event_branches:
        top = max((int(r.max_count) for r in model.rules if r.kind == "event" and r.max_count), default=0)
        rule_sql.append(_event_rules(ctx, event_branches, explain, top))
    stage_conds: dict[str, str] = {}
    for stage in model.stages:
        stage_conds[stage.name] = _stage_sql(ctx, stage.when, stage_conds, flags)
    uses_probability = any(s.when and s.when.probability is not None for s in model.stages)
    # The account join needs account_id; without account traits no lead's account is read at all (on a
    # Parquet log that drops a scan of every message's group_id, ~4% of a run), unless it is the only
    # trait key (the traits CTE needs one column).
    if any(k.startswith("account.") for k in ctx.traits) or all(k.startswith("account.") for k in ctx.traits):
        ctx.trait_field("account_id")

    # Base CTEs.
    live_flags = [k for k in range(len(flags)) if fresh is None or -(k + 1) in fresh]
    derived_idx = [i for i in range(len(model.rules)) if fresh is None or i in fresh]
    derived = [model.rules[i] for i in derived_idx]
    ev_where = _ev_filter(derived, {e for k in live_flags for e in flags[k][0]} | {e for e, _ in ctx.refs})
    ev_from = (f"FROM {src.events} e WHERE e.lead_id IS NOT NULL AND e.ts <= {as_of_sql}{wm}"
               f"{lead_filter.replace(' lead_id IN', ' e.lead_id IN')} AND ({ev_where})")
    props = [(name, col) for name, col in ctx.props.items() if name not in _DIRECT_EVENT_COLUMNS]
    in_props = [(n, c) for n, c in props if not n.startswith("context.")]
    in_ctx = [(n[len("context."):], c) for n, c in props if n.startswith("context.")]
    access = src.access or JSON_ACCESS
    # A typed column's fields are read directly (no JSON to parse): only JSON text columns take the list form.
    many_p = None if access.typed("properties") else dialect.json_str_many("e.properties", [n for n, _ in in_props])
    many_c = None if access.typed("context") else dialect.json_str_many("e.context", [n for n, _ in in_ctx])
    if many_p is not None or many_c is not None:
        # Each message's JSON parsed once for all the properties rules read, not once per property.
        lists = "".join(f", {m} AS {a}" for m, a in ((many_p, "ls_jp"), (many_c, "ls_jc")) if m is not None)
        inner = "".join(f", {ctx.event_field_expr(n)} AS {c}" for n, c in props
                        if (many_c if n.startswith("context.") else many_p) is None)
        picks = "".join(f", ls_jp[{k + 1}] AS {c}" for k, (_, c) in enumerate(in_props) if many_p is not None)
        picks += "".join(f", ls_jc[{k + 1}] AS {c}" for k, (_, c) in enumerate(in_ctx) if many_c is not None)
        picks += "".join(f", {c}" for n, c in props if (many_c if n.startswith("context.") else many_p) is None)
        ev_sql = (f"SELECT lead_id, message_id, ts, type, event, name{picks} FROM ("
                  f"SELECT e.lead_id, e.message_id, e.ts, e.type, e.event, e.name{lists}{inner} {ev_from}) ev_json")
    else:
        prop_cols = "".join(f", {ctx.event_field_expr(name)} AS {col}" for name, col in props)
        ev_sql = f"SELECT e.lead_id, e.message_id, e.ts, e.type, e.event, e.name{prop_cols} {ev_from}"
    if scoped:
        prefix += scoped_sources(dialect, scope, context=any(n.startswith("context.") for n in ctx.props),
                                 video=any(r.video for r in derived))
    events_sql = ev_sql
    if staged_events is not None:
        if dialect.name != "duckdb":
            raise ValueError("staged_events is a DuckDB table; other dialects materialise the rows themselves")
        ev_sql = f"SELECT * FROM {staged_events}"
    base = prefix + [
        ("pop", f"SELECT lead_id FROM {src.population} WHERE TRUE{lead_filter}"),
        ("ev", ev_sql),
    ]
    lead_keys = {k: c for k, c in ctx.traits.items() if not k.startswith("account.")}
    acct_keys = {k[len("account."):]: c for k, c in ctx.traits.items() if k.startswith("account.")}
    pivot = ", ".join(f"max(CASE WHEN key = {quote_literal(k)} THEN value END) AS {c}" for k, c in lead_keys.items())
    base.append(("tr", f"SELECT lead_id, {pivot} FROM {src.traits} WHERE key IN "
                       f"({', '.join(quote_literal(k) for k in lead_keys)}){lead_filter} GROUP BY lead_id"))
    if acct_keys:
        acct_col = lead_keys["account_id"]
        apivot = ", ".join(f"max(CASE WHEN key = {quote_literal(k)} THEN value END) AS {c}" for k, c in acct_keys.items())
        base.append(("ac", f"SELECT account_id, {apivot} FROM {src.account_traits} WHERE key IN "
                           f"({', '.join(quote_literal(k) for k in acct_keys)}) GROUP BY account_id"))
        acct_sel = "".join(f", ac.{c}" for c in acct_keys.values())
        acct_join = f" LEFT JOIN ac ON ac.account_id = tr.{acct_col}"
    else:
        acct_sel = acct_join = ""
    lead_sel = "".join(f", tr.{c}" for c in lead_keys.values())
    base.append(("lt", f"SELECT pop.lead_id{lead_sel}{acct_sel} FROM pop LEFT JOIN tr ON tr.lead_id = pop.lead_id{acct_join}"))
    uses_video = any(r.video for r in derived)
    if uses_video:
        from leadscore.video.facts import video_views_sql
        base.append(("ev_video", f"SELECT * FROM {src.events} e WHERE lead_id IS NOT NULL AND ts <= {as_of_sql}{wm}"
                                 f"{lead_filter} AND type = 'track'"))
        base.append(("vv", video_views_sql(dialect, "ev_video", as_of_sql, src.catalog)))
    for k in live_flags:
        evs, within = flags[k]
        win = f" AND ts > {ctx.before(within)}" if within else ""
        count = f"SELECT lead_id, count(*) AS n FROM ev WHERE event IN ({', '.join(quote_literal(e) for e in evs)}){win} GROUP BY lead_id"
        if merge:
            count = (f"SELECT lead_id, sum(n) AS n FROM ({count} UNION ALL SELECT lead_id, hits[{len(model.rules) + k + 1}] "
                     f"FROM {cache} WHERE lead_id IN (SELECT lead_id FROM ls_leads)) x GROUP BY lead_id")
        ctx.ctes.append((f"f{k}_c", count))
        rule_sql.append(f"SELECT lead_id, {-(k + 1)} AS rule_idx, 0.0 AS pts, n AS hits{ctx.extra()} FROM f{k}_c")

    ctes = base + ctx.ctes
    if explain:
        occ = " UNION ALL ".join(
            [f"SELECT {i} AS rule_idx, lead_id, CAST(message_id AS {dialect.text()}) AS message_id, CAST(ts AS TIMESTAMP) AS ts, pts FROM r{i}_p"
             for i, r in enumerate(model.rules) if r.kind != "event"] +
            (["SELECT rule_idx, lead_id, message_id, CAST(ts AS TIMESTAMP) AS ts, pts FROM ev_pts"] if event_branches else []))
        sql = "WITH " + ",\n".join(_cte(n, q, staged_events) for n, q in ctes) + f"\nSELECT * FROM ({occ}) o ORDER BY rule_idx, ts, message_id"
        return Compiled(sql, list(model.rules), list(model.groups), True, uses_video, uses_probability,
                        _reads_context(ctx), events_sql)

    ctes.append(("hits", " UNION ALL ".join(rule_sql) or
                 f"SELECT CAST(NULL AS {dialect.text()}) AS lead_id, 0 AS rule_idx, 0.0 AS pts, 0 AS hits{ctx.extra()} WHERE FALSE"))
    n = len(model.rules)
    wide = _pivot_sql(dialect, derived_idx, live_flags, state)
    if fresh is None:
        ctes.append(("wide", wide))
    else:
        # The rules not derived here: their points and hits (and state) from the cache (one row per lead).
        ctes.append(("wide_d", wide))
        cols = []
        for i in range(n):
            rule = model.rules[i]
            if merge and i in fresh and rule.kind == "event":
                cols.append(_merged_rule_sql(ctx, i, rule))
            elif i in fresh:
                cols.append(f"w.r{i}, w.h{i}" + (f", w.x{i}, w.t{i}" if state else ""))
            else:
                cols.append(f"COALESCE(c.pts[{i + 1}], 0) AS r{i}, CAST(COALESCE(c.hits[{i + 1}], 0) AS BIGINT) AS h{i}"
                            + (f", c.raw[{i + 1}] AS x{i}, c.last[{i + 1}] AS t{i}" if state else ""))
        cols += [f"w.f{k}" if k in live_flags else f"COALESCE(c.hits[{n + k + 1}], 0) AS f{k}" for k in range(len(flags))]
        ctes.append(("wide", f"SELECT w.lead_id, {', '.join(cols)}, c.valid_until AS ls_cached_valid FROM wide_d w "
                             f"LEFT JOIN {cache} c ON c.lead_id = w.lead_id"))

    def bounded(expr: str, cap, floor) -> str:
        if cap is not None:
            expr = f"LEAST({expr}, {float(cap)!r})"
        if floor is not None:
            expr = f"GREATEST({expr}, {float(floor)!r})"
        return expr

    group_cols = []
    for g, group in model.groups.items():
        members = [f"r{i}" for i, r in enumerate(model.rules) if r.group == g]
        total = " + ".join(members) if members else "0.0"
        group_cols.append(f"{dialect.round(bounded(f'({total})', group.cap, group.floor), 4)} AS g_{_safe(g)}")
    disq = [f"h{i} > 0" for i, r in enumerate(model.rules) if r.disqualify]
    disq_sql = " OR ".join(disq) if disq else "FALSE"
    ctes.append(("grp", f"SELECT w.*, {', '.join(group_cols)}, {disq_sql} AS disqualified FROM wide w"))
    axis_cols = []
    for axis in ("fit", "engagement"):
        members = [f"g_{_safe(g)}" for g, grp in model.groups.items() if grp.axis == axis]
        a = model.axes.get(axis)
        total = f"({' + '.join(members)})" if members else "0.0"
        axis_cols.append(f"{dialect.round(bounded(total, a.cap if a else None, a.floor if a else None), 4)} AS {axis}")
    ctes.append(("ax", f"SELECT grp.*, {', '.join(axis_cols)} FROM grp"))
    if uses_probability:
        ctes.append(("sc", f"SELECT ax.*, {dialect.round('fit + engagement', 4)} AS score, pr.probability FROM ax "
                           f"LEFT JOIN {src.predictions} pr ON pr.lead_id = ax.lead_id"))
    else:
        ctes.append(("sc", f"SELECT ax.*, {dialect.round('fit + engagement', 4)} AS score, CAST(NULL AS {dialect.double()}) AS probability FROM ax"))

    tier = "CASE " + " ".join(f"WHEN score >= {float(t.min)!r} THEN {quote_literal(t.name)}"
                              for t in reversed(model.tiers[1:])) + f" ELSE {quote_literal(model.tiers[0].name)} END"
    stage_idx = "CASE " + " ".join(f"WHEN {stage_conds[s.name]} THEN {k}"
                                   for k, s in reversed(list(enumerate(model.stages))) if k > 0) + " ELSE 0 END"
    if model.disqualified_stage:
        cap_idx = [s.name for s in model.stages].index(model.disqualified_stage)
        stage_idx = f"CASE WHEN disqualified THEN LEAST({stage_idx}, {cap_idx}) ELSE {stage_idx} END"

    def grade(bands, col):
        return "CASE " + " ".join(f"WHEN {col} >= {float(b.min)!r} THEN {quote_literal(b.grade)}" for b in bands if b.min is not None) + \
               f" ELSE {quote_literal(bands[-1].grade)} END"

    if activity and not state:
        ctes.append(("la", f"SELECT lead_id, max(ts) AS last_activity FROM {src.events} WHERE lead_id IS NOT NULL "
                           f"AND ts <= {as_of_sql}{lead_filter} GROUP BY lead_id"))
    elif state:
        # The newest message at or before the instant, and the first one after it received by then (a
        # message stored before its time changes the score when the instant reaches it; one received
        # later is a later batch's message, which re-scores the lead anyway).
        la = (f"SELECT lead_id, max(CASE WHEN ts <= {as_of_sql} THEN ts END) AS last_activity, "
              f"min(CASE WHEN ts > {as_of_sql} AND received_at <= {as_of_sql} THEN ts END) AS ls_next_msg "
              f"FROM {src.events} e WHERE lead_id IS NOT NULL{wm}{lead_filter} GROUP BY lead_id")
        if merge:   # the batch's, and the cached newest message
            la = (f"SELECT pop.lead_id, GREATEST(b.last_activity, c.last_activity) AS last_activity, b.ls_next_msg FROM pop "
                  f"LEFT JOIN ({la}) b ON b.lead_id = pop.lead_id LEFT JOIN {cache} c ON c.lead_id = pop.lead_id")
        ctes.append(("la", la))
    joins_la = activity or state
    state_cols = ""
    if state:
        ctes.append(("ls_nx", _valid_until_sql(ctx, model, flags, live_flags, derived_idx)))
        valid = ["la.ls_next_msg", "ls_nx.nxt"] + (["ls_cached_valid"] if fresh is not None else [])
        moving = [f"h{i} > 0" for i, r in enumerate(model.rules) if r.decay is not None and r.decay.half_life is not None]
        state_cols = (f", {dialect.list_of([f'r{i}' for i in range(n)])} AS ls_pts, "
                      f"{dialect.list_of([f'h{i}' for i in range(n)] + [f'CAST(f{k} AS BIGINT)' for k in range(len(flags))])} AS ls_hits, "
                      f"LEAST({', '.join(valid)}) AS ls_valid, {' OR '.join(moving) or 'FALSE'} AS ls_moving, "
                      f"{dialect.list_of([f'CAST(x{i} AS {dialect.double()})' for i in range(n)])} AS ls_raw, "
                      f"{dialect.list_of([f'CAST(t{i} AS TIMESTAMP)' for i in range(n)])} AS ls_last, "
                      "la.last_activity AS ls_last_activity, ls_ag.agg_rule AS ls_agg_rule, ls_ag.agg_bucket AS ls_agg_bucket, "
                      "ls_ag.agg_value AS ls_agg_value, ls_ag.agg_x AS ls_agg_x")
        ctes.append(("ls_ag", _entries_sql(ctx, model, derived_idx, fresh is not None)))
    ctes.append(("fin", f"SELECT sc.*, {tier} AS tier, {stage_idx} AS stage_idx, "
                        f"{grade(model.grades.fit, 'fit')} || {grade(model.grades.engagement, 'engagement')} AS grade"
                        f"{', la.last_activity' if activity else ''}{state_cols} FROM sc "
                        f"LEFT JOIN lt ON lt.lead_id = sc.lead_id{' LEFT JOIN la ON la.lead_id = sc.lead_id' if joins_la else ''}"
                        f"{' LEFT JOIN ls_nx ON ls_nx.lead_id = sc.lead_id LEFT JOIN ls_ag ON ls_ag.lead_id = sc.lead_id' if state else ''}"))
    stage_name = "CASE stage_idx " + " ".join(f"WHEN {k} THEN {quote_literal(s.name)}" for k, s in enumerate(model.stages)) + " END"
    group_out = ", ".join(f"g_{_safe(g)}" for g in model.groups)
    rule_out = ", ".join(f"r{i}, h{i}" for i in range(n)) + (
        ", ls_pts, ls_hits, ls_valid, ls_moving, ls_raw, ls_last, ls_last_activity, ls_agg_rule, ls_agg_bucket, "
        "ls_agg_value, ls_agg_x" if state else "")
    sql = ("WITH " + ",\n".join(_cte(name, q, staged_events) for name, q in ctes) +
           f"\nSELECT lead_id, score, fit, engagement, tier, {stage_name} AS stage, grade, disqualified, probability, "
           f"{'last_activity, ' if activity else ''}"
           f"{group_out}, {rule_out} FROM fin{' ORDER BY score DESC, lead_id' if ordered else ''}")
    return Compiled(sql, list(model.rules), list(model.groups), False, uses_video, uses_probability,
                    _reads_context(ctx), events_sql)


def _merged_rule_sql(ctx: _Ctx, i: int, rule: Rule) -> str:
    """A merged event rule's wide columns (``compile_model``'s ``merge``): the cache's raw points,
    scaled by a half-life's decay from the cache row's instant to this one (every counted occurrence
    decays by the same factor), plus the batch's (``w.r{i}``: raw), then rounded and capped as the
    full query does; hits added; the newest occurrence the later of the two."""
    d = ctx.d
    old = f"c.raw[{i + 1}]"
    if rule.decay is not None and rule.decay.half_life is not None:
        age = d.seconds_between("c.as_of", ctx.as_of)
        old = f"{old} * {d.power('0.5', f'{age} / {_seconds(rule.decay.half_life)}')}"
    raw = f"(COALESCE({old}, 0) + w.r{i})"
    pts = d.round(raw, 4)
    if rule.cap is not None:
        pts = f"GREATEST(LEAST({pts}, {float(rule.cap)!r}), {-float(rule.cap)!r})"
    return (f"{pts} AS r{i}, CAST(COALESCE(c.hits[{i + 1}], 0) + w.h{i} AS BIGINT) AS h{i}, {raw} AS x{i}, "
            f"GREATEST(c.last[{i + 1}], w.t{i}) AS t{i}")


def _entries_sql(ctx: _Ctx, model: Model, derived: list[int], cached: bool) -> str:
    """(lead_id, agg_rule, agg_bucket, agg_value, agg_x): each lead's aggregate entries as four lists,
    the derived aggregate rules' (``r{i}_e``) and, with a cache, the others' cached ones."""
    d = ctx.d
    parts = [f"SELECT lead_id, {i} AS r, b, v, x FROM r{i}_e" for i in derived if model.rules[i].kind == "aggregate"]
    mine = [i for i in derived if model.rules[i].kind == "aggregate"]
    if cached:
        keep = f" WHERE r NOT IN ({', '.join(str(i) for i in mine)})" if mine else ""
        parts.append(f"SELECT lead_id, r, b, v, x FROM ls_c_agg{keep}")
    if not parts:
        return (f"SELECT CAST(NULL AS {d.text()}) AS lead_id, CAST(NULL AS BIGINT[]) AS agg_rule, CAST(NULL AS {d.text()}[]) "
                f"AS agg_bucket, CAST(NULL AS {d.text()}[]) AS agg_value, CAST(NULL AS {d.double()}[]) AS agg_x WHERE FALSE")
    agg = "array_agg" if d.name == "postgres" else "list"
    return (f"SELECT lead_id, {agg}(CAST(r AS BIGINT)) AS agg_rule, {agg}(b) AS agg_bucket, {agg}(v) AS agg_value, "
            f"{agg}(x) AS agg_x FROM ({' UNION ALL '.join(parts)}) e GROUP BY lead_id")


def _valid_until_sql(ctx: _Ctx, model: Model, flags: list, live_flags: list[int], derived: list[int]) -> str:
    """(lead_id, nxt): per lead, the first instant from the as-of on at which time alone moves one of
    the derived rules' (or flags') points: an occurrence leaving a window (ts + W), passing a decay
    step (ts + A), a lead going idle (last ts + N) or an event leaving a stage's ``within``. The
    edges are those of ``leadscore.engine.incremental`` (``_edges``), kept when ``ts + D >= as_of``
    (both ends kept: re-scoring at an instant where nothing moved is harmless, missing one is not).
    A continuous (half-life) decay moves at every instant: the partial re-score derives such rules
    every time (``leadscore.engine.partial``), so they draw no edge here."""
    from leadscore.engine.incremental import _edges

    def edge(ts: str, durations) -> str | None:
        parts = [f"CASE WHEN {ts} >= {ctx.before(dur)} THEN {ctx.d.ts_plus(ts, dur)} END" for dur in durations]
        return None if not parts else parts[0] if len(parts) == 1 else f"LEAST({', '.join(parts)})"

    by_union: dict[str, list[str]] = {}
    parts = []
    for i in derived:
        rule = model.rules[i]
        if rule.kind == "trait" or (rule.decay is not None and rule.decay.half_life is not None):
            continue
        e = edge("ts" if rule.kind != "inactivity" else "last_ts", _edges(rule))
        if e is None:
            continue
        if rule.kind == "aggregate":
            parts.append(f"SELECT lead_id, {e} AS b FROM r{i}_m")
        elif rule.kind == "inactivity":
            parts.append(f"SELECT lead_id, {e} AS b FROM r{i}_l")
        else:
            union = {"limited": "ev_occ", "once": "ev_once", "first": "ev_first"}[ctx.rank_kinds[i]]   # see _event_rules
            by_union.setdefault(union, []).append(f"WHEN {i} THEN {e}")
    for union, whens in by_union.items():
        parts.append(f"SELECT lead_id, CASE rule_idx {' '.join(whens)} END AS b FROM {union}")
    for k in live_flags:
        evs, within = flags[k]
        e = edge("ts", [within] if within else [])
        if e is not None:
            parts.append(f"SELECT lead_id, {e} AS b FROM ev WHERE event IN ({', '.join(quote_literal(x) for x in evs)})")
    if not parts:
        return "SELECT lead_id, CAST(NULL AS TIMESTAMP) AS nxt FROM pop WHERE FALSE"
    return f"SELECT lead_id, min(b) AS nxt FROM ({' UNION ALL '.join(parts)}) x GROUP BY lead_id"


def _cte(name: str, query: str, staged_events: str | None) -> str:
    # A staged ``ev`` is read by each consumer (NOT MATERIALIZED), not copied again into the query.
    if name == "ev" and staged_events is not None:
        return f"{name} AS NOT MATERIALIZED ({query})"
    return f"{name} AS ({query})"


def _reads_context(ctx: _Ctx) -> bool:
    return any(n.startswith("context.") for n in ctx.props)
