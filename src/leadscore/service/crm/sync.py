"""CRM targets and the sync worker: newest score per lead, batched, driven from the ``crm_sync`` outbox.

A score change enqueues one item per enabled target (``outbox.enqueue_crm_sync``). ``run_once(now)``
takes, per target, the newest pending item of each lead (older ones become ``superseded``: the latest
score wins), looks up the lead's CRM identity (e-mail for HubSpot; a Salesforce Id or external id
trait), maps the fields and pushes them in batches. Failures retry on the outbox schedule; a rate or
request limit pauses the target without spending attempts. All state is in the store.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from leadscore.service.crm.base import CrmClient, SyncItem
from leadscore.service.crm.hubspot import BASE_URL as HUBSPOT_URL, CrmSetupError, HubSpotClient
from leadscore.service.crm.mapping import HUBSPOT_DEFAULT, SALESFORCE_DEFAULT, FieldMapping
from leadscore.service.crm.salesforce import LOGIN_TOKEN_URL, SalesforceClient, oauth_refresher
from leadscore.service.outbox import OutboxError, later, marks, retry_delay, session, utc_naive
from leadscore.store import Store

log = logging.getLogger("leadscore.crm")

KINDS = ("hubspot", "salesforce")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
_OPTION_KEYS = {
    "hubspot": {"id_property", "email_trait", "property_group", "ca_file", "timeout"},
    "salesforce": {"version", "sobject", "external_id_field", "id_trait", "ca_file", "timeout", "limit_pause",
                   "client_id", "token_url"},
}


@dataclass
class CrmTarget:
    name: str
    kind: str
    base_url: str
    mapping: FieldMapping
    options: dict[str, Any]
    token: str | None
    enabled: bool
    properties_ready: bool
    paused_until: datetime | None
    last_error: str | None
    limit_info: str | None
    created_at: datetime

    @property
    def identity_trait(self) -> str:
        """The trait holding the CRM identity; ``lead_id`` means our own lead id."""
        if self.kind == "hubspot":
            return self.options.get("email_trait", "email")
        default = "lead_id" if self.options.get("external_id_field") else "salesforce_id"
        return self.options.get("id_trait", default)


def token_env_var(name: str, what: str = "TOKEN") -> str:
    """$LEADSCORE_CRM_<NAME>_TOKEN (also _REFRESH_TOKEN and _CLIENT_SECRET for Salesforce OAuth)."""
    return "LEADSCORE_CRM_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_" + what


def add_crm_target(target: Any, name: str, kind: str, *, now: datetime, base_url: str | None = None,
                   mapping: Mapping[str, str] | str | None = None, options: Mapping[str, Any] | None = None,
                   token: str | None = None) -> CrmTarget:
    """Register a CRM to sync to. The token may be left out and given as $LEADSCORE_CRM_<NAME>_TOKEN."""
    now = utc_naive(now)
    if not isinstance(name, str) or not _NAME.match(name):
        raise OutboxError(f"name: {name!r} must be lower-case letters, digits, - or _ (starting with a letter)")
    if kind not in KINDS:
        raise OutboxError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "salesforce" and not base_url:
        raise OutboxError("base_url: Salesforce needs the instance URL (https://<instance>.my.salesforce.com)")
    base_url = base_url or HUBSPOT_URL
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise OutboxError(f"base_url: {base_url!r} is not an http(s) URL")
    fm = FieldMapping.parse(mapping, HUBSPOT_DEFAULT if kind == "hubspot" else SALESFORCE_DEFAULT)
    opts = dict(options or {})
    for key in opts:
        if key not in _OPTION_KEYS[kind]:
            raise OutboxError(f"options.{key}: unknown for {kind}; known: {', '.join(sorted(_OPTION_KEYS[kind]))}")
    with session(target) as db:
        if db.rows("SELECT 1 FROM crm_targets WHERE name = ?", (name,)):
            raise OutboxError(f"name: a CRM target {name} exists already")
        db.run("INSERT INTO crm_targets (name, kind, base_url, mapping, options, token, enabled, properties_ready, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?, TRUE, FALSE, ?)", (name, kind, base_url, fm.to_json(), json.dumps(opts), token, now))
    return CrmTarget(name, kind, base_url, fm, opts, token, True, False, None, None, None, now)


_COLS = "name, kind, base_url, mapping, options, token, enabled, properties_ready, paused_until, last_error, limit_info, created_at"


def _target(row: tuple) -> CrmTarget:
    r = list(row)
    r[3] = FieldMapping(json.loads(r[3]))
    r[4] = json.loads(r[4] or "{}")
    return CrmTarget(*r)


def list_crm_targets(store: Any) -> list[CrmTarget]:
    with session(store) as db:
        return [_target(r) for r in db.rows(f"SELECT {_COLS} FROM crm_targets ORDER BY name")]


def set_crm_target_enabled(target: Any, name: str, enabled: bool) -> None:
    with session(target) as db:
        if not db.rows("SELECT 1 FROM crm_targets WHERE name = ?", (name,)):
            raise OutboxError(f"name: no CRM target {name}")
        db.run("UPDATE crm_targets SET enabled = ?, paused_until = NULL WHERE name = ?", (bool(enabled), name))


def build_client(t: CrmTarget, *, refresh: Callable[[], str] | None = None, **http: Any) -> CrmClient:
    """A client for a stored target (token from the row or the environment)."""
    token = t.token or os.environ.get(token_env_var(t.name), "")
    o = t.options
    common = dict(mapping=t.mapping, timeout=float(o.get("timeout", 30.0)), **http)
    if "ca_file" in o and "verify" not in http:
        common["verify"] = o["ca_file"]
    if t.kind == "hubspot":
        return HubSpotClient(token, base_url=t.base_url, id_property=o.get("id_property", "email"),
                             property_group=o.get("property_group", "contactinformation"), **common)
    refresh_token = os.environ.get(token_env_var(t.name, "REFRESH_TOKEN"))
    if refresh is None and refresh_token and o.get("client_id"):
        refresh = oauth_refresher(o["client_id"], refresh_token, client_secret=os.environ.get(token_env_var(t.name, "CLIENT_SECRET")),
                                  token_url=o.get("token_url", LOGIN_TOKEN_URL), verify=common.get("verify", True))
    return SalesforceClient(t.base_url, token, version=str(o.get("version", "60.0")), sobject=o.get("sobject", "Lead"),
                            external_id_field=o.get("external_id_field"), refresh=refresh,
                            limit_pause=float(o.get("limit_pause", 3600.0)), **common)


@dataclass
class CrmReport:
    synced: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    superseded: int = 0
    requests_paused: list[str] | None = None


class CrmSyncWorker:
    """Pushes pending CRM sync items. ``clients`` overrides the client built for a target name
    (e.g. a ``SalesforceClient`` with a token ``refresh`` callback)."""

    def __init__(self, store: Store, *, clients: Mapping[str, CrmClient] | None = None,
                 refresh: Mapping[str, Callable[[], str]] | None = None, rng: random.Random | None = None,
                 lease_seconds: float = 300.0, claim_size: int = 1000, max_rounds: int = 100, **http: Any):
        self.store = store
        self._clients: dict[str, CrmClient] = dict(clients or {})
        self._own: set[str] = set()
        self.refresh = dict(refresh or {})
        self.rng = rng or random.Random()
        self.lease_seconds = lease_seconds
        self.claim_size = claim_size
        self.max_rounds = max_rounds
        self.http = http

    def close(self) -> None:
        for name in self._own:
            self._clients[name].close()

    def __enter__(self) -> "CrmSyncWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _client(self, t: CrmTarget) -> CrmClient:
        if t.name not in self._clients:
            self._clients[t.name] = build_client(t, refresh=self.refresh.get(t.name), **self.http)
            self._own.add(t.name)
        return self._clients[t.name]

    def run_forever(self, *, interval: float = 5.0, stop: threading.Event | None = None,
                    now_fn: Callable[[], datetime] | None = None) -> None:
        stop = stop or threading.Event()
        now_fn = now_fn or (lambda: datetime.now(timezone.utc).replace(tzinfo=None))
        while not stop.is_set():
            try:
                self.run_once(now_fn())
            except Exception:
                log.exception("CRM sync pass failed; retrying")
            stop.wait(interval)

    def run_once(self, now: datetime, *, only: str | None = None) -> CrmReport:
        now = utc_naive(now)
        report = CrmReport(requests_paused=[])
        for t in list_crm_targets(self.store):
            if not t.enabled or (only and t.name != only) or (t.paused_until is not None and t.paused_until > now):
                continue
            try:
                client = self._client(t)
            except CrmSetupError as exc:
                self._target_state(t.name, last_error=str(exc))
                continue
            if not t.properties_ready:
                try:
                    res = client.prepare(now)
                except CrmSetupError as exc:
                    self._target_state(t.name, last_error=str(exc), paused_until=later(now, 3600))
                    report.requests_paused.append(t.name)
                    continue
                if res is not None and res.pause_seconds is not None:
                    self._target_state(t.name, last_error=res.pause_reason, paused_until=later(now, res.pause_seconds))
                    report.requests_paused.append(t.name)
                    continue
                self._target_state(t.name, properties_ready=True)
            self._sync_target(t, client, now, report)
        return report

    # -- one target
    def _sync_target(self, t: CrmTarget, client: CrmClient, now: datetime, report: CrmReport) -> None:
        for _ in range(self.max_rounds):
            rows = self._claim(t, now, report)
            if not rows:
                return
            idents = self._identities([r[1] for r in rows], t.identity_trait)
            items, skipped = [], []
            for seq, lead_id, values_json in rows:
                values = json.loads(values_json)
                ident = idents.get(lead_id) or (values.get("email") if t.kind == "hubspot" else None)
                mapped = t.mapping.apply(values, strings=client.strings)
                if not ident:
                    skipped.append((seq, f"lead {lead_id} has no {t.identity_trait} trait"))
                elif not mapped:
                    skipped.append((seq, "none of the mapped fields has a value"))
                else:
                    items.append(SyncItem(str(seq), ident, mapped))
            res = client.push(items, now) if items else None
            with session(self.store) as db:
                for seq, why in skipped:
                    report.skipped += 1
                    db.run("UPDATE crm_sync SET status = 'skipped', last_error = ?, last_attempt_at = ?, lease_until = NULL "
                           "WHERE seq = ?", (why, now, seq))
                if res is None:
                    continue
                attempts = dict(db.rows(f"SELECT seq, attempts FROM crm_sync WHERE seq IN ({marks(len(items))})",
                                        [int(i.key) for i in items]))
                last_error = None
                untried = [int(it.key) for it in items if it.key not in res.results]
                ok: dict[int | None, list[int]] = {}
                for it in items:
                    r = res.results.get(it.key)
                    if r is not None and r.ok:
                        ok.setdefault(r.http_status, []).append(int(it.key))
                for start in range(0, len(untried), 500):  # not attempted (paused): back in the queue, no attempt spent
                    chunk = untried[start:start + 500]
                    db.run(f"UPDATE crm_sync SET lease_until = NULL WHERE seq IN ({marks(len(chunk))})", chunk)
                for status, seqs in ok.items():
                    report.synced += len(seqs)
                    for start in range(0, len(seqs), 500):
                        chunk = seqs[start:start + 500]
                        db.run("UPDATE crm_sync SET status = 'synced', attempts = attempts + 1, last_status = ?, last_error = NULL, "
                               "last_attempt_at = ?, synced_at = ?, next_attempt_at = NULL, lease_until = NULL "
                               f"WHERE status = 'pending' AND seq IN ({marks(len(chunk))})", [status, now, now, *chunk])
                for it in items:
                    seq = int(it.key)
                    r = res.results.get(it.key)
                    if r is None or r.ok:
                        continue
                    n = attempts[seq] + 1
                    last_error = r.error
                    delay = retry_delay(n, self.rng) if r.retry else None
                    if delay is None:
                        report.dead += 1
                    else:
                        report.failed += 1
                    db.run("UPDATE crm_sync SET status = ?, attempts = ?, last_status = ?, last_error = ?, last_attempt_at = ?, "
                           "next_attempt_at = ?, lease_until = NULL WHERE seq = ? AND status = 'pending'",
                           ("dead" if delay is None else "pending", n, r.http_status, r.error, now,
                            None if delay is None else later(now, delay), seq))
                paused = later(now, res.pause_seconds) if res.pause_seconds is not None else None
                db.run("UPDATE crm_targets SET last_error = ?, limit_info = COALESCE(?, limit_info), paused_until = ? WHERE name = ?",
                       (res.pause_reason or last_error, res.limit_info, paused, t.name))
            if res is not None and res.pause_seconds is not None:
                report.requests_paused.append(t.name)
                return

    def _claim(self, t: CrmTarget, now: datetime, report: CrmReport) -> list[tuple]:
        """Lease the due pending items of this target, one per lead: the newest. Older pending items (and
        any older than what was already synced) become ``superseded`` first: the latest score wins."""
        stale = """
            SELECT p.seq FROM (
                SELECT seq, lead_id, as_of,
                       row_number() OVER (PARTITION BY lead_id ORDER BY as_of DESC, seq DESC) AS rn
                FROM crm_sync WHERE target = ? AND status = 'pending') p
            WHERE p.rn > 1 OR EXISTS (SELECT 1 FROM crm_sync s WHERE s.target = ? AND s.status = 'synced'
                                      AND s.lead_id = p.lead_id AND s.as_of > p.as_of)"""
        until = later(now, self.lease_seconds)
        with session(self.store) as db:
            gone = db.rows(f"UPDATE crm_sync SET status = 'superseded', lease_until = NULL WHERE seq IN ({stale}) RETURNING seq",
                           (t.name, t.name))
            report.superseded += len(gone)
            rows = db.rows("UPDATE crm_sync SET lease_until = ? WHERE seq IN ("
                           "SELECT seq FROM crm_sync WHERE target = ? AND status = 'pending' AND next_attempt_at <= ? "
                           "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY seq LIMIT ?) "
                           "RETURNING seq, lead_id, as_of, score_values", (until, t.name, now, now, self.claim_size))
            # A row enqueued between the two statements could give a lead two rows: keep its newest.
            newest: dict[str, tuple] = {}
            for row in rows:
                if row[1] not in newest or (row[2], row[0]) > (newest[row[1]][2], newest[row[1]][0]):
                    newest[row[1]] = row
            extra = [r[0] for r in rows if newest[r[1]][0] != r[0]]
            if extra:
                db.run(f"UPDATE crm_sync SET status = 'superseded', lease_until = NULL WHERE seq IN ({marks(len(extra))})", extra)
                report.superseded += len(extra)
        return sorted(((r[0], r[1], r[3]) for r in newest.values()), key=lambda r: r[0])

    def _identities(self, lead_ids: list[str], trait: str) -> dict[str, str]:
        if trait == "lead_id":
            return {i: i for i in lead_ids}
        out: dict[str, str] = {}
        with session(self.store) as db:
            for start in range(0, len(lead_ids), 500):
                chunk = lead_ids[start:start + 500]
                out.update(db.rows(f"SELECT lead_id, value FROM resolved_traits WHERE key = ? AND lead_id IN ({marks(len(chunk))}) "
                                   "AND value IS NOT NULL AND value <> ''", [trait, *chunk]))
        return out

    def _target_state(self, name: str, **cols: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        with session(self.store) as db:
            db.run(f"UPDATE crm_targets SET {sets} WHERE name = ?", [*cols.values(), name])
