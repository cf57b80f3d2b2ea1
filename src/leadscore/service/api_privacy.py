"""Privacy: everything held about one lead, exported as JSON or erased in one transaction.

``lead_tables`` lists where a lead's data lives; ``export_lead`` reads it all, ``erase_lead`` deletes
it all (events sent under the lead's id or any of its anonymous/aliased ids, traits, identities,
scores, history, predictions, outcomes, alerts, and its queued or past webhook/CRM deliveries) and
returns the counts. The REST routes (admin only) are in ``leadscore.service.api``.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from leadscore.service import outbox
from leadscore.store import Store

# (table, column holding the lead's id or ids); "ids" means: the lead and every alias of it.
LEAD_TABLES: tuple[tuple[str, str, str], ...] = (
    ("events", "user_id", "ids"),
    ("events", "anonymous_id", "ids"),
    ("lead_traits", "lead_id", "ids"),
    ("identities", "alias_id", "ids"),
    ("identities", "lead_id", "lead"),
    ("leads", "lead_id", "ids"),
    ("lead_scores", "lead_id", "lead"),
    ("score_history", "lead_id", "lead"),
    ("live_rule_cache", "lead_id", "lead"),
    ("scores", "lead_id", "lead"),
    ("outcomes", "lead_id", "lead"),
    ("lead_predictions", "lead_id", "lead"),
    ("alerts", "lead_id", "lead"),
    ("outbox_messages", "lead_id", "lead"),
    ("crm_sync", "lead_id", "lead"),
)


def lead_ids(store: Store, conn: Any, lead: str) -> list[str]:
    """The lead's own id and every id that resolves to it (anonymous ids, aliased ids)."""
    rows = store._fetchall(conn, "SELECT alias_id FROM identities WHERE lead_id = ?", (lead,))
    return [lead] + sorted({r[0] for r in rows} - {lead})


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and value != value:
        return None
    return value


def _decode(table: str, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        v = _plain(v)
        if k in ("properties", "context", "groups", "rules", "detail", "body", "score_values") and isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[k] = v
    return out


def _resolve(store: Store, conn: Any, lead: str) -> str:
    rows = store._fetchall(conn, "SELECT lead_id FROM identities WHERE alias_id = ?", (lead,))
    return rows[0][0] if rows else lead


def lead_known(store: Store, conn: Any, lead: str) -> bool:
    ids = lead_ids(store, conn, lead)
    marks = ",".join("?" * len(ids))
    return bool(store._fetchall(conn, f"SELECT 1 FROM leads WHERE lead_id IN ({marks}) UNION ALL "
                                      f"SELECT 1 FROM events WHERE user_id IN ({marks}) OR anonymous_id IN ({marks}) "
                                      "UNION ALL SELECT 1 FROM lead_scores WHERE lead_id = ?", ids + ids + ids + [lead]))


def export_lead(store: Store, lead: str) -> dict[str, Any] | None:
    """Every row held about the lead, by table (None when nothing is held)."""
    with store.transaction() as conn:
        lead = _resolve(store, conn, lead)
        if not lead_known(store, conn, lead):
            return None
        ids = lead_ids(store, conn, lead)
        out: dict[str, Any] = {"lead_id": lead, "ids": ids, "tables": {}}
        seen_events: set[str] = set()
        for table, col, which in LEAD_TABLES:
            keys = ids if which == "ids" else [lead]
            cur = store._execute(conn, f"SELECT * FROM {table} WHERE {col} IN ({','.join('?' * len(keys))})", keys)
            names = [d[0] for d in cur.description]
            rows = [_decode(table, dict(zip(names, r))) for r in cur.fetchall()]
            if table == "events":
                rows = [r for r in rows if r["message_id"] not in seen_events]
                seen_events |= {r["message_id"] for r in rows}
            out["tables"].setdefault(table, []).extend(rows)
        for name, sql in (("webhook_deliveries", "SELECT d.* FROM webhook_deliveries d WHERE d.lead_id = ?"),):
            cur = store._execute(conn, sql, (lead,))
            names = [d[0] for d in cur.description]
            out["tables"][name] = [_decode(name, dict(zip(names, r))) for r in cur.fetchall()]
    return out


def erase_lead(store: Store, lead: str) -> dict[str, int] | None:
    """Delete everything held about the lead in one transaction; the counts per table (None: unknown lead)."""
    counts: dict[str, int] = {}
    with store._lock, store.transaction() as conn:
        lead = _resolve(store, conn, lead)
        if not lead_known(store, conn, lead):
            return None
        ids = lead_ids(store, conn, lead)
        counts.update({f"outbox_{k}": v for k, v in outbox.erase_lead(outbox.Sql(conn, store), lead).items()})
        for table, col, which in LEAD_TABLES:
            if table in ("outbox_messages", "crm_sync"):
                continue  # erased above with their deliveries and attempts
            keys = ids if which == "ids" else [lead]
            marks = ",".join("?" * len(keys))
            n = store._fetchall(conn, f"SELECT COUNT(*) FROM {table} WHERE {col} IN ({marks})", keys)[0][0]
            if n:
                store._execute(conn, f"DELETE FROM {table} WHERE {col} IN ({marks})", keys)
            counts[table] = counts.get(table, 0) + int(n)
    return counts
