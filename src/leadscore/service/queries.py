"""Read models over the store: the lead list, one lead, accounts, the model's summary, what-ifs.

Plain functions (no web framework) shared by the REST API (``leadscore.service.api``) and the dashboard
(``leadscore.web``). They read the live tables the service keeps (``lead_scores``, ``score_history``)
plus the event log and traits, and page with keyset cursors so that the first page of 100,000 leads
is one indexed/top-N query plus a few lookups for the page's rows only (no explanation per row).

Time is an input: ``as_of`` bounds the events and windows read; nothing here reads the clock.
Bad input raises ``QueryError`` whose ``field`` names the offending parameter.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from leadscore.model.schema import Model
from leadscore.store import Store
from leadscore.store.dialect import quote_literal

TREND_POINTS = 10          # score_history points per row in the lead list's trend
_CHUNK = 500               # ids per IN (...) list
LEAD_SORTS = {"score": "ls.score", "fit": "ls.fit", "engagement": "ls.engagement",
              "updated": "ls.updated_at", "lead_id": "ls.lead_id"}
ACCOUNT_SORTS = ("score", "engagement", "fit", "leads", "account_id")
SEARCH_TRAITS = ("email", "name", "first_name", "last_name", "company.name")
DISPLAY_TRAITS = ("email", "name", "first_name", "last_name", "company.name", "title", "account_id")


class QueryError(ValueError):
    """A bad parameter; ``field`` names it (the API answers 422 with it)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(KeyError):
    """No such lead / account / model."""


# ------------------------------------------------------------------------------------------ helpers
def _naive(ts: datetime | None, field: str = "as_of") -> datetime | None:
    if ts is None:
        return None
    if not isinstance(ts, datetime):
        raise QueryError(field, f"expected a timestamp, got {ts!r}")
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return ts


def _iso(ts: Any) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return _naive(ts).isoformat()
    return str(ts)


def _json(value: Any) -> Any:
    """A JSON column as Python: DuckDB hands back text, PostgreSQL (JSONB) a dict."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _in(store: Store, col: str, ids: Sequence[str]) -> tuple[str, list[Any]]:
    """``col`` is one of ``ids``: one array parameter on PostgreSQL (its primary-key and other btree
    indexes serve ``= ANY``), a list of bound parameters on DuckDB (an IN list of constants is what
    DuckDB turns into an index scan where the column has an ART index of its own)."""
    if store.dialect.name == "postgres":
        return f"{col} = ANY(?)", [list(ids)]
    return f"{col} IN ({_marks(len(ids))})", list(ids)


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([_iso(v) if isinstance(v, datetime) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n: int, field: str = "cursor") -> list[Any]:
    try:
        pad = "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(cursor + pad).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise QueryError(field, "not a cursor this API returned") from exc
    if not isinstance(values, list) or len(values) != n:
        raise QueryError(field, "not a cursor this API returned")
    return values


def aliases_of(store: Store, leads: Sequence[str]) -> dict[str, str]:
    """alias id → lead for every anonymous id / aliased id that now means one of ``leads``."""
    out: dict[str, str] = {}
    for chunk in _chunks(leads):
        cond, params = _in(store, "lead_id", chunk)
        for alias, lead in store.query(f"SELECT alias_id, lead_id FROM identities WHERE {cond}", params):
            out[alias] = lead
    return out


def resolve_lead(store: Store, lead: str) -> str:
    """The lead an id means (an anonymous or aliased id resolves to its lead)."""
    rows = store.query("SELECT lead_id FROM identities WHERE alias_id = ?", (lead,))
    return rows[0][0] if rows else lead


def traits_of(store: Store, leads: Sequence[str], keys: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Current traits of each lead (its own and its aliases', newest wins), as {lead: {key: value}}.
    Numeric traits come back as numbers."""
    leads = list(dict.fromkeys(leads))
    if not leads:
        return {}
    alias = aliases_of(store, leads)
    owners = leads + list(alias)
    best: dict[tuple[str, str], tuple] = {}
    wanted = set(keys) if keys else None
    for chunk in _chunks(owners):
        # Only the lead id in SQL: a second condition (key IN ...) keeps DuckDB from using an index on
        # lead_id; the dozen traits per lead are filtered here instead.
        cond, params = _in(store, "lead_id", chunk)
        rows = store.query(f"SELECT lead_id, key, value, num, ts, message_id FROM lead_traits WHERE {cond}", params)
        for owner, key, value, num, ts, mid in rows:
            if wanted is not None and key not in wanted:
                continue
            lead = alias.get(owner, owner)
            old = best.get((lead, key))
            if old is None or (ts, mid) > (old[2], old[3]):
                best[(lead, key)] = (value, num, ts, mid)
    out: dict[str, dict[str, Any]] = {lead: {} for lead in leads}
    for (lead, key), (value, num, _, _) in best.items():
        out[lead][key] = num if num is not None and value is not None and _is_number_text(value) else value
    return out


def _is_number_text(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def display_name(traits: dict[str, Any]) -> str | None:
    name = traits.get("name")
    if name:
        return str(name)
    parts = [str(traits[k]) for k in ("first_name", "last_name") if traits.get(k)]
    return " ".join(parts) or None


def last_activity(store: Store, leads: Sequence[str], as_of: datetime) -> dict[str, datetime]:
    """Time of each lead's newest event at or before ``as_of`` (its aliases' events included)."""
    leads = list(dict.fromkeys(leads))
    if not leads:
        return {}
    alias = aliases_of(store, leads)
    ids = leads + list(alias)
    out: dict[str, datetime] = {}
    for chunk in _chunks(ids):
        for col in ("user_id", "anonymous_id"):
            cond, params = _in(store, col, chunk)
            rows = store.query(f"SELECT {col}, MAX(ts) FROM events WHERE {cond} AND ts <= ? GROUP BY {col}",
                               params + [as_of])
            for owner, ts in rows:
                lead = alias.get(owner, owner)
                if ts is not None and (lead not in out or ts > out[lead]):
                    out[lead] = ts
    return out


def score_trends(store: Store, leads: Sequence[str], points: int = TREND_POINTS) -> dict[str, list[float]]:
    """The last ``points`` scores of each lead from its history, oldest first."""
    out: dict[str, list[float]] = {lead: [] for lead in leads}
    for chunk in _chunks(leads):
        cond, params = _in(store, "lead_id", chunk)
        rows = store.query(
            "SELECT lead_id, score FROM (SELECT lead_id, score, changed_at, row_number() OVER "
            "(PARTITION BY lead_id ORDER BY changed_at DESC) AS rn FROM score_history "
            f"WHERE {cond}) h WHERE rn <= ? ORDER BY lead_id, changed_at", params + [points])
        for lead, score in rows:
            out[lead].append(float(score))
    return out


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v for v in value.split(",") if v] or None
    return list(value) or None


def _like(text: str) -> str:
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# ------------------------------------------------------------------------------------------ leads
def _scored_after(store: Store, as_of: datetime) -> bool:
    """Whether some live score was made as of a later instant than ``as_of`` (its stored last
    activity may then be newer than ``as_of``)."""
    return bool(store.query("SELECT 1 FROM lead_scores WHERE as_of > ? LIMIT 1", [as_of]))


def _lead_filters(store: Store, *, tier, stage, grade, account, min_score, max_score, active_within_days, q,
                  updated_since, as_of) -> tuple[list[str], list[Any], bool]:
    """SQL conditions on ``lead_scores ls`` and their parameters, and whether one of them reads
    more than ``lead_scores`` (the traits or the event log): the page then filters once for its
    count and its rows."""
    where, params = [], []
    wide = False
    for col, value, field in (("tier", tier, "tier"), ("stage", stage, "stage"), ("grade", grade, "grade")):
        values = _as_list(value)
        if values:
            where.append(f"ls.{col} IN ({_marks(len(values))})")
            params += values
    for value, op, field in ((min_score, ">=", "min_score"), (max_score, "<=", "max_score")):
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError) as exc:
                raise QueryError(field, f"expected a number, got {value!r}") from exc
            if value != value:
                raise QueryError(field, "expected a number, got NaN")
            where.append(f"ls.score {op} ?")
            params.append(value)
    if account:
        wide = True
        where.append("ls.lead_id IN (SELECT COALESCE(m.lead_id, t.lead_id) FROM lead_traits t "
                     "LEFT JOIN identities m ON m.alias_id = t.lead_id WHERE t.key = 'account_id' AND t.value = ?)")
        params.append(account)
    if updated_since is not None:
        where.append("ls.updated_at >= ?")
        params.append(_naive(updated_since, "updated_since"))
    if active_within_days is not None:
        try:
            days = float(active_within_days)
        except (TypeError, ValueError) as exc:
            raise QueryError("active_within_days", f"expected a number of days, got {active_within_days!r}") from exc
        if not 0 <= days <= 36500:
            raise QueryError("active_within_days", "must be between 0 and 36500")
        since = as_of - timedelta(days=days)
        # Active within = an event in (as_of - days, as_of]: the lead's newest event as of its live
        # score (lead_scores.last_activity_at, written with every score) is in that window. A score
        # made as of a later instant than ``as_of`` may count newer events: those leads (none, when
        # the page is "now") are asked of the event log.
        fresh = "(ls.last_activity_at > ? AND ls.last_activity_at <= ?)"
        # Asked first rather than left to the planner: the event-log half joins the whole window's events.
        # One set of ids (a hash semi-join on both engines; as an OR of a subquery PostgreSQL runs the
        # subquery per row).
        if _scored_after(store, as_of):
            wide = True
            where.append("ls.lead_id IN (SELECT lead_id FROM lead_scores WHERE as_of <= ? AND last_activity_at > ? "
                         "AND last_activity_at <= ? UNION ALL SELECT s.lead_id FROM lead_scores s "
                         "JOIN resolved_events r ON r.lead_id = s.lead_id WHERE s.as_of > ? AND r.ts > ? AND r.ts <= ?)")
            params += [as_of, since, as_of, as_of, since, as_of]
        else:
            where.append(fresh)
            params += [since, as_of]
    if q:
        if len(q) > 200:
            raise QueryError("q", "search text longer than 200 characters")
        pattern = _like(q)
        wide = True
        # One set of matching ids (the narrow ``leads`` table holds every scored id; the trait keys are
        # literals so that a partial index on those keys can serve the trait half), then the scores.
        keys = ", ".join(quote_literal(k) for k in SEARCH_TRAITS)
        where.append("ls.lead_id IN (SELECT lead_id FROM leads WHERE lower(lead_id) LIKE ? ESCAPE '\\' UNION ALL "
                     "SELECT COALESCE(m.lead_id, t.lead_id) FROM lead_traits t LEFT JOIN identities m ON m.alias_id = t.lead_id "
                     f"WHERE t.key IN ({keys}) AND lower(t.value) LIKE ? ESCAPE '\\')")
        params += [pattern, pattern]
    return where, params, wide


def _score_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"lead_id": r["lead_id"], "score": float(r["score"]), "fit": float(r["fit"]),
            "engagement": float(r["engagement"]), "tier": r["tier"], "stage": r["stage"], "grade": r["grade"],
            "disqualified": bool(r["disqualified"]), "model_version": r["model_version"],
            "probability": None if r["probability"] is None else float(r["probability"]),
            "updated_at": _iso(r["updated_at"])}


def stored_activity(store: Store, leads: Sequence[str]) -> dict[str, tuple[datetime | None, datetime]]:
    """{lead: (last_activity_at, as_of)} of the leads' live scores."""
    out: dict[str, tuple[datetime | None, datetime]] = {}
    for chunk in _chunks(list(dict.fromkeys(leads))):
        cond, params = _in(store, "lead_id", chunk)
        for lead, last, at in store.query(f"SELECT lead_id, last_activity_at, as_of FROM lead_scores WHERE {cond}", params):
            out[lead] = (last, at)
    return out


def activity_of(store: Store, leads: Sequence[str], as_of: datetime,
                stored: dict[str, tuple[datetime | None, datetime]] | None = None) -> dict[str, datetime]:
    """Each lead's newest event at or before ``as_of``: the time stored with its live score
    (``stored``, read when not given) when that score was made as of ``as_of`` or earlier, else
    (no live score, or one made as of a later instant) from the event log."""
    stored = stored_activity(store, leads) if stored is None else stored
    out: dict[str, datetime] = {}
    ask = []
    for lead in dict.fromkeys(leads):
        row = stored.get(lead)
        if row is None or row[1] is None or row[1] > as_of:
            ask.append(lead)
        elif row[0] is not None:
            out[lead] = row[0]
    if ask:
        out.update(last_activity(store, ask, as_of))
    return out


def enrich(store: Store, rows: list[dict[str, Any]], as_of: datetime,
           stored: dict[str, tuple[datetime | None, datetime]] | None = None) -> list[dict[str, Any]]:
    """Add email, name, company, account, last activity and the score trend to lead rows.
    ``stored``: the rows' (last_activity_at, as_of) from lead_scores when the caller has them."""
    ids = [r["lead_id"] for r in rows]
    if not ids:
        return rows
    traits = traits_of(store, ids, DISPLAY_TRAITS)
    active = activity_of(store, ids, as_of, stored)
    trends = score_trends(store, ids)
    for r in rows:
        t = traits.get(r["lead_id"], {})
        r.update(email=t.get("email"), name=display_name(t), company=t.get("company.name"), title=t.get("title"),
                 account=t.get("account_id"), last_activity=_iso(active.get(r["lead_id"])),
                 trend=trends.get(r["lead_id"], []))
    return rows


def list_leads(store: Store, *, tier: str | Sequence[str] | None = None, stage: str | Sequence[str] | None = None,
               grade: str | Sequence[str] | None = None, account: str | None = None,
               min_score: float | None = None, max_score: float | None = None,
               active_within_days: float | None = None, q: str | None = None,
               updated_since: datetime | None = None, sort: str = "score", desc: bool = True,
               limit: int = 50, cursor: str | None = None, as_of: datetime) -> dict[str, Any]:
    """Scored leads, filtered and ranked, one page at a time.

    Filters: tier/stage/grade (one value, a list, or comma-separated), account (account_id), a score
    range, active within N days of ``as_of``, ``q`` (case-insensitive substring of the lead id,
    e-mail, name or company), ``updated_since`` (score changed since). ``sort`` is one of
    LEAD_SORTS; ties break on lead id. Returns ``{"items", "next_cursor", "total"}``; pass
    ``next_cursor`` back as ``cursor`` (with the same filters and sort) for the next page.
    """
    as_of = _naive(as_of)
    if sort not in LEAD_SORTS:
        raise QueryError("sort", f"one of {', '.join(LEAD_SORTS)}, got {sort!r}")
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise QueryError("limit", "must be between 1 and 1000")
    where, params, wide = _lead_filters(store, tier=tier, stage=stage, grade=grade, account=account,
                                        min_score=min_score, max_score=max_score,
                                        active_within_days=active_within_days, q=q, updated_since=updated_since,
                                        as_of=as_of)
    col = LEAD_SORTS[sort]
    order = "DESC" if desc else "ASC"
    after, after_params = [], []
    if cursor:
        value, last_id = decode_cursor(cursor, 2)
        if sort == "updated":
            try:
                value = datetime.fromisoformat(value)
            except (TypeError, ValueError) as exc:
                raise QueryError("cursor", "not a cursor this API returned") from exc
        elif sort != "lead_id" and not isinstance(value, (int, float)):
            raise QueryError("cursor", "not a cursor this API returned (was it made for another sort?)")
        cmp = "<" if desc else ">"
        if sort == "lead_id":
            after.append(f"ls.lead_id {cmp} ?")
            after_params.append(str(last_id))
        else:
            after.append(f"({col} {cmp} ? OR ({col} = ? AND ls.lead_id {cmp} ?))")
            after_params += [value, value, str(last_id)]
    columns = ("ls.lead_id, ls.score, ls.fit, ls.engagement, ls.tier, ls.stage, ls.grade, ls.disqualified, "
               "ls.model_version, ls.probability, ls.updated_at, ls.last_activity_at, ls.as_of")
    tail = ((f" ORDER BY {col} {order}, ls.lead_id {order}" if sort != "lead_id" else f" ORDER BY ls.lead_id {order}")
            + f" LIMIT {limit + 1}")
    count_sql = "SELECT COUNT(*) FROM lead_scores ls" + (" WHERE " + " AND ".join(where) if where else "")
    if wide:
        # A filter reading the traits or the event log runs once: its rows are counted and paged together.
        sql = (f"WITH f AS MATERIALIZED (SELECT {columns} FROM lead_scores ls WHERE {' AND '.join(where)}) "
               "SELECT ls.*, (SELECT COUNT(*) FROM f) AS total_rows_ FROM f ls"
               + (" WHERE " + " AND ".join(after) if after else "") + tail)
        raw = store.query_dicts(sql, params + after_params)
        if raw:
            total = raw[0]["total_rows_"]
        else:
            total = store.query(count_sql, params)[0][0] if cursor else 0
    else:
        total = store.query(count_sql, params)[0][0]
        page_where = where + after
        raw = store.query_dicts(f"SELECT {columns} FROM lead_scores ls"
                                + (" WHERE " + " AND ".join(page_where) if page_where else "") + tail,
                                params + after_params)
    more = len(raw) > limit
    raw = raw[:limit]
    stored = {r["lead_id"]: (r["last_activity_at"], r["as_of"]) for r in raw}
    items = enrich(store, [_score_row(r) for r in raw], as_of, stored)
    next_cursor = None
    if more and raw:
        last = raw[-1]
        key = {"score": "score", "fit": "fit", "engagement": "engagement", "updated": "updated_at", "lead_id": "lead_id"}[sort]
        next_cursor = encode_cursor([last[key], last["lead_id"]])
    return {"items": items, "next_cursor": next_cursor, "total": int(total)}


def current_score(store: Store, lead: str) -> dict[str, Any] | None:
    rows = store.query_dicts("SELECT * FROM lead_scores WHERE lead_id = ?", (lead,))
    return _score_row(rows[0]) if rows else None


def lead_history(store: Store, lead: str, *, limit: int = 100, before: datetime | None = None) -> list[dict[str, Any]]:
    """The lead's score changes, newest first: score/fit/engagement/tier/stage, the previous values and the
    cause (event with its messageIds, time, model with its version)."""
    params: list[Any] = [lead]
    extra = ""
    if before is not None:
        extra = " AND changed_at < ?"
        params.append(_naive(before, "before"))
    rows = store.query_dicts(
        "SELECT changed_at, model_version, score, fit, engagement, tier, stage, prev_score, prev_tier, prev_stage, "
        f"cause, cause_ref FROM score_history WHERE lead_id = ?{extra} ORDER BY changed_at DESC LIMIT {int(limit)}", params)
    out = []
    for r in rows:
        out.append({"changed_at": _iso(r["changed_at"]), "model_version": r["model_version"],
                    "score": float(r["score"]), "fit": float(r["fit"]), "engagement": float(r["engagement"]),
                    "tier": r["tier"], "stage": r["stage"],
                    "prev_score": None if r["prev_score"] is None else float(r["prev_score"]),
                    "prev_tier": r["prev_tier"], "prev_stage": r["prev_stage"],
                    "cause": r["cause"], "cause_ref": r["cause_ref"]})
    return out


def lead_timeline(store: Store, lead: str, as_of: datetime, *, limit: int = 100,
                  before: datetime | None = None) -> list[dict[str, Any]]:
    """The lead's events (its aliases' included) at or before ``as_of``, newest first."""
    as_of = _naive(as_of)
    before = _naive(before, "before") if before is not None else None
    ids = [lead] + list(aliases_of(store, [lead]))
    # Each id column alone in its WHERE: DuckDB answers ``col IN (constants)`` from the column's index
    # but scans all 5 M events once another condition (ts, or the OR of both columns) joins it. A
    # lead's events are few; the time bounds, order and limit are applied here.
    rows: dict[str, dict[str, Any]] = {}
    for col in ("user_id", "anonymous_id"):
        cond, params = _in(store, col, ids)
        for r in store.query_dicts("SELECT message_id, type, event, name, user_id, anonymous_id, group_id, ts, "
                                   f"received_at, properties FROM events WHERE {cond}", params):
            if r["ts"] <= as_of and (before is None or r["ts"] < before):
                rows[r["message_id"]] = r
    ordered = sorted(rows.values(), key=lambda r: (r["ts"], r["message_id"]), reverse=True)[:int(limit)]
    return [{"message_id": r["message_id"], "type": r["type"],
             "event": r["event"] or r["name"] or r["type"], "user_id": r["user_id"], "anonymous_id": r["anonymous_id"],
             "group_id": r["group_id"], "ts": _iso(r["ts"]), "received_at": _iso(r["received_at"]),
             "properties": _json(r["properties"]) or {}} for r in ordered]


def lead_events_sql(store: Store, lead: str) -> str:
    """One lead's rows of ``resolved_events`` as a relation (SQL text, ids as literals) for SQL
    builders that take an events relation (the video reconstruction). Same rows as ``resolved_events
    WHERE lead_id = lead``, found through the lead's ids (an event resolves to the lead only through
    its user id, or through its anonymous id when it has no user id) so that DuckDB can use the id
    columns' indexes instead of resolving all 5 M events first."""
    ids = ", ".join(quote_literal(i) for i in [lead] + list(aliases_of(store, [lead])))
    me = quote_literal(lead)
    return (f"(SELECT * FROM resolved_events WHERE user_id IN ({ids}) AND lead_id = {me} UNION ALL "
            f"SELECT * FROM resolved_events WHERE anonymous_id IN ({ids}) "
            f"AND (CASE WHEN user_id IS NULL THEN 1 ELSE 0 END) = 1 AND lead_id = {me})")


def lead_exists(store: Store, lead: str) -> bool:
    return bool(store.query("SELECT 1 FROM leads WHERE lead_id = ? UNION ALL SELECT 1 FROM lead_scores WHERE lead_id = ?",
                            (lead, lead)))


def lead_detail(store: Store, model: Model, lead: str, as_of: datetime, *, history_limit: int = 50,
                timeline_limit: int = 100) -> dict[str, Any]:
    """Everything the lead page shows: the explanation object (exactly ``leadscore explain --json``) plus
    ``traits``, ``account`` (id, name and rollup), ``current`` (the stored live score), ``history``,
    ``timeline`` and ``videos`` (per-video viewing facts). Raises NotFound for an unknown lead."""
    from leadscore.engine.explain import UnknownLead, explain_lead
    from leadscore.video.facts import VIEW_COLUMNS, video_views_sql
    from leadscore.video.read import as_of_sql

    as_of = _naive(as_of)
    lead = resolve_lead(store, lead)
    try:
        out = explain_lead(store, model, lead, as_of)
    except UnknownLead as exc:
        raise NotFound(lead) from exc
    traits = traits_of(store, [lead]).get(lead, {})
    account_id = traits.get("account_id")
    out["traits"] = traits
    out["account"] = account_summary(store, str(account_id)) if account_id else None
    out["current"] = current_score(store, lead)
    out["history"] = lead_history(store, lead, limit=history_limit)
    out["timeline"] = lead_timeline(store, lead, as_of, limit=timeline_limit)
    # leadscore.video.read.views(store, as_of, lead_id=lead), over the lead's events found by its ids
    rows = store.query_dicts(f"SELECT * FROM ({video_views_sql(store.dialect, lead_events_sql(store, lead), as_of_sql(store, as_of))}) v "
                             "ORDER BY v.lead_id, v.video_id")
    out["videos"] = [{k: (_iso(r[k]) if isinstance(r[k], datetime) else r[k]) for k in VIEW_COLUMNS} for r in rows]
    return out


# ------------------------------------------------------------------------------------------ accounts
@dataclass(frozen=True)
class AccountRollup:
    """How an account's score rolls up from its leads: engagement = the sum of the ``top_n`` highest
    engagement scores of its leads, fit = the ``fit`` aggregate ('max' or 'avg') of their fit; the
    account score = engagement_weight × engagement + fit_weight × fit."""
    top_n: int = 3
    fit: str = "max"
    engagement_weight: float = 1.0
    fit_weight: float = 1.0

    def __post_init__(self):
        if self.top_n < 1:
            raise QueryError("top_n", "must be at least 1")
        if self.fit not in ("max", "avg"):
            raise QueryError("fit", "one of max, avg")


DEFAULT_ROLLUP = AccountRollup()

_LEAD_ACCOUNT = ("SELECT lead_id, account_id FROM (SELECT COALESCE(m.lead_id, t.lead_id) AS lead_id, t.value AS account_id, "
                 "row_number() OVER (PARTITION BY COALESCE(m.lead_id, t.lead_id) ORDER BY t.ts DESC, t.message_id DESC) AS rn "
                 "FROM lead_traits t LEFT JOIN identities m ON m.alias_id = t.lead_id WHERE t.key = 'account_id') a WHERE rn = 1")


def _rollup_sql(rollup: AccountRollup, account_where: str = "") -> str:
    fit = "MAX(fit)" if rollup.fit == "max" else "AVG(fit)"
    return (f"WITH la AS ({_LEAD_ACCOUNT}), s AS (SELECT la.account_id, ls.lead_id, ls.engagement, ls.fit, ls.tier, "
            "row_number() OVER (PARTITION BY la.account_id ORDER BY ls.engagement DESC, ls.lead_id) AS rn "
            f"FROM la JOIN lead_scores ls ON ls.lead_id = la.lead_id {account_where}), "
            "r AS (SELECT account_id, "
            f"SUM(CASE WHEN rn <= {int(rollup.top_n)} THEN engagement ELSE 0 END) AS engagement, {fit} AS fit, "
            "COUNT(*) AS leads, SUM(CASE WHEN tier = ? THEN 1 ELSE 0 END) AS top_tier_leads FROM s GROUP BY account_id) "
            f"SELECT account_id, engagement * {float(rollup.engagement_weight)!r} + fit * {float(rollup.fit_weight)!r} AS score, "
            "engagement, fit, leads, top_tier_leads FROM r")


def _account_names(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {i: {} for i in ids}
    for chunk in _chunks(ids):
        for acc, key, value, num in store.query(
                f"SELECT account_id, key, value, num FROM account_traits WHERE account_id IN ({_marks(len(chunk))})", chunk):
            out[acc][key] = num if num is not None and value is not None and _is_number_text(value) else value
    return out


def _top_tier(store: Store, model: Model | None) -> str:
    if model is not None:
        return model.tiers[-1].name
    return "hot"


def _account_row(r: dict[str, Any], traits: dict[str, Any]) -> dict[str, Any]:
    return {"account_id": r["account_id"], "name": traits.get("name") or traits.get("company.name"),
            "score": round(float(r["score"]), 6), "engagement": round(float(r["engagement"]), 6),
            "fit": round(float(r["fit"]), 6), "leads": int(r["leads"]), "hot_leads": int(r["top_tier_leads"] or 0),
            "traits": traits}


def list_accounts(store: Store, *, rollup: AccountRollup = DEFAULT_ROLLUP, model: Model | None = None,
                  q: str | None = None, min_score: float | None = None, sort: str = "score", desc: bool = True,
                  limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """Accounts ranked by their rolled-up score (see AccountRollup); ``hot_leads`` counts leads in the
    model's top tier. Returns ``{"items", "next_cursor", "total"}`` like list_leads."""
    if sort not in ACCOUNT_SORTS:
        raise QueryError("sort", f"one of {', '.join(ACCOUNT_SORTS)}, got {sort!r}")
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise QueryError("limit", "must be between 1 and 1000")
    where, params = [], [_top_tier(store, model)]
    if q:
        where.append("(lower(x.account_id) LIKE ? ESCAPE '\\' OR x.account_id IN (SELECT account_id FROM account_traits "
                     "WHERE key IN ('name', 'company.name') AND lower(value) LIKE ? ESCAPE '\\'))")
        params += [_like(q), _like(q)]
    if min_score is not None:
        where.append("x.score >= ?")
        params.append(float(min_score))
    base = f"SELECT * FROM ({_rollup_sql(rollup)}) x" + (" WHERE " + " AND ".join(where) if where else "")
    total = store.query(f"SELECT COUNT(*) FROM ({base}) c", params)[0][0]
    order = "DESC" if desc else "ASC"
    page_params = list(params)
    cond = ""
    if cursor:
        value, last_id = decode_cursor(cursor, 2)
        cmp = "<" if desc else ">"
        if sort == "account_id":
            cond = f" WHERE p.account_id {cmp} ?"
            page_params.append(str(last_id))
        else:
            if not isinstance(value, (int, float)):
                raise QueryError("cursor", "not a cursor this API returned")
            cond = f" WHERE (p.{sort} {cmp} ? OR (p.{sort} = ? AND p.account_id {cmp} ?))"
            page_params += [value, value, str(last_id)]
    order_by = f"p.account_id {order}" if sort == "account_id" else f"p.{sort} {order}, p.account_id {order}"
    rows = store.query_dicts(f"SELECT * FROM ({base}) p{cond} ORDER BY {order_by} LIMIT {limit + 1}", page_params)
    more = len(rows) > limit
    rows = rows[:limit]
    names = _account_names(store, [r["account_id"] for r in rows])
    items = [_account_row(r, names.get(r["account_id"], {})) for r in rows]
    next_cursor = encode_cursor([rows[-1][sort], rows[-1]["account_id"]]) if more and rows else None
    return {"items": items, "next_cursor": next_cursor, "total": int(total)}


def account_summary(store: Store, account_id: str, *, rollup: AccountRollup = DEFAULT_ROLLUP,
                    model: Model | None = None) -> dict[str, Any] | None:
    rows = store.query_dicts(f"SELECT * FROM ({_rollup_sql(rollup)}) x WHERE x.account_id = ?",
                             [_top_tier(store, model), account_id])
    traits = _account_names(store, [account_id]).get(account_id, {})
    if not rows:
        if not traits:
            return None
        return {"account_id": account_id, "name": traits.get("name"), "score": 0.0, "engagement": 0.0, "fit": 0.0,
                "leads": 0, "hot_leads": 0, "traits": traits}
    return _account_row(rows[0], traits)


def account_detail(store: Store, account_id: str, as_of: datetime, *, rollup: AccountRollup = DEFAULT_ROLLUP,
                   model: Model | None = None, lead_limit: int = 200) -> dict[str, Any]:
    """One account: its rollup and traits, and its leads (by engagement, those counted in the rollup
    flagged ``counted``). Raises NotFound."""
    summary = account_summary(store, account_id, rollup=rollup, model=model)
    if summary is None:
        raise NotFound(account_id)
    rows = store.query_dicts(
        f"WITH la AS ({_LEAD_ACCOUNT}) SELECT ls.* FROM la JOIN lead_scores ls ON ls.lead_id = la.lead_id "
        f"WHERE la.account_id = ? ORDER BY ls.engagement DESC, ls.lead_id LIMIT {int(lead_limit)}", [account_id])
    leads = enrich(store, [_score_row(r) for r in rows], _naive(as_of),
                   {r["lead_id"]: (r["last_activity_at"], r["as_of"]) for r in rows})
    for i, lead in enumerate(leads):
        lead["counted"] = i < rollup.top_n
    return {**summary, "rollup": {"top_n": rollup.top_n, "fit": rollup.fit, "engagement_weight": rollup.engagement_weight,
                                  "fit_weight": rollup.fit_weight}, "lead_items": leads}


# ------------------------------------------------------------------------------------------ the model
def distribution(store: Store, model_version: str | None = None) -> dict[str, Any]:
    """Counts of the live scores per tier, stage and grade, and a score histogram (10-point buckets)."""
    where, params = "", []
    if model_version:
        where, params = " WHERE model_version = ?", [model_version]
    out: dict[str, Any] = {"leads": store.query(f"SELECT COUNT(*) FROM lead_scores{where}", params)[0][0]}
    for col in ("tier", "stage", "grade"):
        out[col] = {k: int(n) for k, n in store.query(
            f"SELECT {col}, COUNT(*) FROM lead_scores{where} GROUP BY {col} ORDER BY {col}", params)}
    hist = store.query(f"SELECT CAST(FLOOR(score / 10) AS INTEGER) * 10 AS b, COUNT(*) FROM lead_scores{where} "
                       "GROUP BY b ORDER BY b", params)
    out["histogram"] = [{"from": int(b), "to": int(b) + 10, "leads": int(n)} for b, n in hist]
    return out


def model_summary(store: Store, model: Model) -> dict[str, Any]:
    """The model as the dashboard shows it: groups, rules, tiers, stages, alerts, and the distribution of
    the live scores (all of them, and those made by this version)."""
    rules = [{"name": r.name, "group": r.group, "axis": model.groups[r.group].axis, "kind": r.kind,
              "points": r.points, "description": r.description, "disqualify": r.disqualify} for r in model.rules]
    versions = {v: int(n) for v, n in store.query("SELECT model_version, COUNT(*) FROM lead_scores GROUP BY model_version")}
    return {
        "name": model.name, "version": model.model_version, "description": model.description,
        "groups": {g: {"axis": grp.axis, "cap": grp.cap, "floor": grp.floor, "description": grp.description}
                   for g, grp in model.groups.items()},
        "rules": rules,
        "tiers": [{"name": t.name, "min": t.min} for t in model.tiers],
        "stages": [s.name for s in model.stages],
        "alerts": [a.model_dump(mode="json", exclude_none=True) for a in model.alerts],
        "scored_by_version": versions,
        "distribution": distribution(store),
    }


def tier_whatif(store: Store, thresholds: dict[str, float | None], model: Model | None = None) -> dict[str, Any]:
    """How many leads would fall in each tier under other thresholds ({tier: min}, lowest tier first with
    no min), compared with their current tiers: ``{"current", "proposed", "moves"}``."""
    if not isinstance(thresholds, dict) or not thresholds:
        raise QueryError("thresholds", "give at least one tier with its minimum score")
    if model is not None:
        known = [t.name for t in model.tiers]
        for name in thresholds:
            if name not in known:
                raise QueryError(f"thresholds.{name}", f"not a tier of the model ({', '.join(known)})")
        merged = {t.name: t.min for t in model.tiers}
        merged.update(thresholds)
        merged[known[0]] = None
        thresholds = {n: merged[n] for n in known}
    ordered: list[tuple[str, float]] = []
    lowest = None
    for name, value in thresholds.items():
        if value is None:
            if lowest is not None:
                raise QueryError(f"thresholds.{name}", "only the lowest tier may have no minimum")
            lowest = name
            continue
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise QueryError(f"thresholds.{name}", f"expected a number, got {value!r}") from exc
        if value != value or value in (float("inf"), float("-inf")):
            raise QueryError(f"thresholds.{name}", "expected a finite number")
        ordered.append((name, value))
    ordered.sort(key=lambda t: t[1])
    lowest = lowest or "below"
    case = "CASE " + " ".join(f"WHEN score >= ? THEN ?" for _ in ordered[::-1]) + " ELSE ? END"
    params: list[Any] = []
    for name, value in ordered[::-1]:
        params += [value, name]
    params.append(lowest)
    rows = store.query(f"SELECT tier, {case} AS proposed, COUNT(*) FROM lead_scores GROUP BY tier, proposed", params)
    current: dict[str, int] = {}
    proposed: dict[str, int] = {name: 0 for name in [lowest] + [n for n, _ in ordered]}
    moves = []
    for cur, new, n in rows:
        current[cur] = current.get(cur, 0) + int(n)
        proposed[new] = proposed.get(new, 0) + int(n)
        if cur != new:
            moves.append({"from": cur, "to": new, "leads": int(n)})
    moves.sort(key=lambda m: (-m["leads"], m["from"], m["to"]))
    return {"thresholds": {lowest: None, **dict(ordered)}, "current": current, "proposed": proposed, "moves": moves,
            "changed": sum(m["leads"] for m in moves)}


# ------------------------------------------------------------------------------------------ alerts
def list_alerts(store: Store, *, lead: str | None = None, name: str | None = None, since: datetime | None = None,
                limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """Recent alerts (table ``alerts``, migration 0010), newest first, keyset-paged."""
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise QueryError("limit", "must be between 1 and 1000")
    where, params = [], []
    if lead:
        where.append("lead_id = ?")
        params.append(lead)
    if name:
        where.append("name = ?")
        params.append(name)
    if since is not None:
        where.append("fired_at >= ?")
        params.append(_naive(since, "since"))
    total = store.query("SELECT COUNT(*) FROM alerts" + (" WHERE " + " AND ".join(where) if where else ""), params)[0][0]
    if cursor:
        value, last_id = decode_cursor(cursor, 2)
        try:
            value = datetime.fromisoformat(value)
        except (TypeError, ValueError) as exc:
            raise QueryError("cursor", "not a cursor this API returned") from exc
        where.append("(fired_at < ? OR (fired_at = ? AND alert_id < ?))")
        params += [value, value, str(last_id)]
    rows = store.query_dicts("SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
                             + f" ORDER BY fired_at DESC, alert_id DESC LIMIT {int(limit) + 1}", params)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [alert_row(r) for r in rows]
    next_cursor = encode_cursor([rows[-1]["fired_at"], rows[-1]["alert_id"]]) if more and rows else None
    return {"items": items, "next_cursor": next_cursor, "total": int(total)}


def alert_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"alert_id": r["alert_id"], "lead_id": r["lead_id"], "name": r["name"], "trigger": r["trigger"],
            "type": r["type"], "fired_at": _iso(r["fired_at"]), "model_version": r["model_version"],
            "score": r["score"], "prev_score": r["prev_score"], "tier": r["tier"], "prev_tier": r["prev_tier"],
            "stage": r["stage"], "prev_stage": r["prev_stage"], "cause": r["cause"], "cause_ref": r["cause_ref"],
            "detail": _json(r["detail"]) or {}}


# ------------------------------------------------------------------------------------------ videos
def video_stats(store: Store, as_of: datetime) -> list[dict[str, Any]]:
    """One row per video (catalogued or watched): viewers, average share watched, completion rates,
    watch time, sessions and CTA clicks, from the per-viewer facts of ``leadscore.video``."""
    from leadscore.video.read import views

    as_of = _naive(as_of)
    catalog = {r["video_id"]: r for r in store.query_dicts(
        "SELECT video_id, title, duration, category, stage FROM video_catalog ORDER BY video_id")}
    by_video: dict[str, list[dict[str, Any]]] = {}
    for row in views(store, as_of):
        by_video.setdefault(row["video_id"], []).append(row)
    out = []
    for vid in sorted(set(catalog) | set(by_video)):
        rows = by_video.get(vid, [])
        cat = catalog.get(vid, {})
        first = rows[0] if rows else {}
        pcts = [float(r["percent_watched"]) for r in rows if r["percent_watched"] is not None]
        n = len(rows)
        out.append({
            "video_id": vid, "title": cat.get("title") or first.get("title"),
            "category": cat.get("category") or first.get("category"), "stage": cat.get("stage") or first.get("stage"),
            "duration": _num(cat.get("duration") or max((r["duration"] or 0 for r in rows), default=None) or None),
            "viewers": len({r["lead_id"] for r in rows if r["lead_id"] is not None}),
            "views": n,
            "sessions": int(sum(int(r["sessions"] or 0) for r in rows)),
            "avg_percent_watched": round(sum(pcts) / len(pcts), 2) if pcts else None,
            "completion_rate": {str(t): round(sum(1 for r in rows if r[f"completed_{t}"]) / n, 4) if n else None
                                for t in (25, 50, 75, 100)},
            "watch_seconds": _num(sum(float(r["watch_seconds"] or 0) for r in rows)),
            "cta_clicks": int(sum(int(r["cta_clicks"] or 0) for r in rows)),
            "last_viewed": _iso(max((r["last_ts"] for r in rows if r["last_ts"] is not None), default=None)),
        })
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def video_detail(store: Store, video_id: str, as_of: datetime, *, viewer_limit: int = 200) -> dict[str, Any]:
    """One video: its stats, the engagement graph (per second: plays summed over viewers, viewers who
    played it, and that as a share of viewers) and per-viewer heatmap rows (the most-watching first).
    Raises NotFound for a video neither catalogued nor watched."""
    from leadscore.video.read import heatmaps

    as_of = _naive(as_of)
    stats = next((v for v in video_stats(store, as_of) if v["video_id"] == video_id), None)
    if stats is None:
        raise NotFound(video_id)
    maps = [h for h in heatmaps(store, video_id, as_of) if h.lead_id is not None]
    n = max((len(h.counts) for h in maps), default=0)
    plays = [0] * n
    viewers = [0] * n
    for h in maps:
        for k, c in enumerate(h.counts):
            plays[k] += c
            viewers[k] += 1 if c > 0 else 0
    total = len(maps)
    graph = [{"second": k, "plays": plays[k], "viewers": viewers[k],
              "share": round(viewers[k] / total, 4) if total else 0.0} for k in range(n)]
    maps.sort(key=lambda h: (-sum(1 for c in h.counts if c), h.lead_id))
    rows = [{"lead_id": h.lead_id, "seconds_watched": sum(1 for c in h.counts if c), "counts": h.counts}
            for h in maps[:viewer_limit]]
    return {**stats, "graph": graph, "heatmaps": rows, "heatmap_viewers": total}


# ------------------------------------------------------------------------------------------ dry run
def model_dry_run(store: Store, model: Model, as_of: datetime) -> dict[str, Any]:
    """What activating ``model`` would change, compared with the live scores: how many leads would
    change tier, stage or score, and the tier moves (from → to, leads). Writes nothing."""
    from leadscore.engine import score_leads

    as_of = _naive(as_of)
    frame = score_leads(store, model, as_of)
    live = {r[0]: r[1:] for r in store.query("SELECT lead_id, score, tier, stage FROM lead_scores")}
    moves: dict[tuple[str | None, str], int] = {}
    tier_changes = stage_changes = score_changes = 0
    for lead, score, tier, stage in zip(frame["lead_id"], frame["score"], frame["tier"], frame["stage"]):
        old = live.get(lead)
        old_score, old_tier, old_stage = old if old else (None, None, None)
        if old_tier != tier:
            tier_changes += 1
            moves[(old_tier, tier)] = moves.get((old_tier, tier), 0) + 1
        if old_stage != stage:
            stage_changes += 1
        if old_score is None or abs(float(old_score) - float(score)) >= 1e-9:
            score_changes += 1
    return {"version": model.model_version, "as_of": as_of.isoformat(), "leads": int(len(frame)),
            "tier_changes": tier_changes, "stage_changes": stage_changes, "score_changes": score_changes,
            "moves": [{"from": f, "to": t, "leads": n} for (f, t), n in sorted(moves.items(), key=lambda kv: (-kv[1], str(kv[0])))]}
