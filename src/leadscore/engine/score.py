"""Scoring a population as of an instant, on the store's own database."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscore.engine.compile import Sources, _safe, compile_model
from leadscore.model.schema import Model
from leadscore.store import Store


def to_naive_utc(as_of: datetime) -> datetime:
    if as_of.tzinfo is not None:
        from datetime import timezone
        as_of = as_of.astimezone(timezone.utc).replace(tzinfo=None)
    return as_of


def _frame(model: Model, table) -> pd.DataFrame:
    """The engine's result as the score frame: renamed columns, one conversion per column, one
    DataFrame construction (per-column astype and concat cost ~1 ms a column, and a default model has ~100)."""
    if hasattr(table, "column_names"):
        # pyarrow's own conversion (C++, threaded; numeric columns without nulls are not copied again, text
        # becomes pandas' Arrow-backed str): a million leads × 69 columns in 0.3-0.6 s, against 1.9 s for
        # a numpy array per column first (Python str objects for every text value, then inferred back).
        raw = table.rename_columns([c.lower() for c in table.column_names]).to_pandas()
    else:
        raw = pd.DataFrame(table)
        raw.columns = [c.lower() for c in raw.columns]
    cols = {c: raw[c] for c in raw.columns}

    def num(name, dtype=np.float64):
        v = cols[name]
        return v.to_numpy() if v.dtype == dtype else v.astype(dtype).to_numpy()

    def text(name):
        v = cols[name]
        return v if pd.api.types.is_string_dtype(v.dtype) and v.dtype != object else v.astype(object).astype(str)

    out = {
        "lead_id": text("lead_id"),
        "score": num("score"), "fit": num("fit"), "engagement": num("engagement"),
        "tier": text("tier"), "stage": text("stage"), "grade": text("grade"),
        "disqualified": cols["disqualified"].astype(bool).to_numpy(),
        "probability": pd.to_numeric(cols["probability"], errors="coerce").to_numpy(float),
    }
    if "last_activity" in cols:
        out["last_activity"] = pd.to_datetime(cols["last_activity"]).to_numpy()
    for g in model.groups:
        out[f"group:{g}"] = num(f"g_{_safe(g)}")
    for i, rule in enumerate(model.rules):
        out[f"rule:{rule.name}"] = num(f"r{i}")
        out[f"hits:{rule.name}"] = num(f"h{i}", np.int64)
    # copy=False: the columns stay the arrays made above (views of the query's result where the types
    # allow), not copied again into one block; for a million leads that copy was the result once more.
    return pd.DataFrame(out, copy=False)


def frame_select_sql(model: Model, columns: Iterable[str]) -> str:
    """:func:`_frame`'s columns, names and types as a SELECT list over the engine's result columns
    (``columns``: their names), so that DuckDB can write the score frame where it holds the result
    (``engine.parquet.write_scores``) without building it in Python."""
    have = {c.lower(): c for c in columns}

    def ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def col(raw: str, name: str, sql_type: str, cast: str = "CAST") -> str:
        return f"{cast}({ident(have[raw])} AS {sql_type}) AS {ident(name)}"

    parts = [col("lead_id", "lead_id", "VARCHAR"), col("score", "score", "DOUBLE"), col("fit", "fit", "DOUBLE"),
             col("engagement", "engagement", "DOUBLE"), col("tier", "tier", "VARCHAR"),
             col("stage", "stage", "VARCHAR"), col("grade", "grade", "VARCHAR"),
             col("disqualified", "disqualified", "BOOLEAN"),
             col("probability", "probability", "DOUBLE", "TRY_CAST")]   # pd.to_numeric(errors="coerce")
    if "last_activity" in have:
        parts.append(col("last_activity", "last_activity", "TIMESTAMP"))
    parts += [col(f"g_{_safe(g)}", f"group:{g}", "DOUBLE") for g in model.groups]
    for i, rule in enumerate(model.rules):
        parts += [col(f"r{i}", f"rule:{rule.name}", "DOUBLE"), col(f"h{i}", f"hits:{rule.name}", "BIGINT")]
    return ", ".join(parts)


def lead_scope(store: Store, leads: list[str]) -> list[str]:
    """The leads and every id that resolves to one of them (their anonymous and aliased ids)."""
    ids = list(dict.fromkeys(leads))
    with store.transaction() as conn:
        aliases = store._fetch_in(conn, "SELECT alias_id FROM identities WHERE lead_id IN {ids}", ids) if ids else []
    return ids + [a for (a,) in aliases]


# Scoring many leads of a DuckDB store: past SCAN_MIN_LEADS leads and SCAN_SHARE of the store's leads,
# one scan of the log with the lead list as a semi-join costs less than fetching each lead's messages
# through the id indexes. Measured on the demo population (default model, 20,000 leads / 960k events,
# one pass each): 300 leads 0.31 s by index against 0.44 s by scan; 1,000: 0.42 / 0.43; 5,000: 1.15 / 0.58;
# 2,000 of 2,000 leads: 0.61 / 0.26. (PostgreSQL keeps the index path: not measured there.)
SCAN_MIN_LEADS = 500
SCAN_SHARE = 0.05


def _scan_beats_index(store: Store, leads: int) -> bool:
    if store.dialect.name != "duckdb" or leads <= SCAN_MIN_LEADS:
        return False
    return leads > SCAN_SHARE * store.query("SELECT count(*) FROM leads")[0][0]


def score_leads(store: Store, model: Model, as_of: datetime, leads: list[str] | None = None,
                sources: Sources | None = None, activity: bool = False,
                scope: list[str] | None = None) -> pd.DataFrame:
    """One row per lead: lead_id, score, fit, engagement, tier, stage, grade, disqualified,
    probability, ``group:<name>``, ``rule:<name>`` (points) and ``hits:<name>`` (times fired);
    with ``activity``, also ``last_activity`` (the lead's newest message at or before ``as_of``).
    With ``leads``, only those leads' messages and traits are read (see ``compile.scoped_sources``),
    unless they are many (:data:`SCAN_SHARE`: then the log is scanned once for them);
    ``scope``: their ids when the caller already has them (:func:`lead_scope`)."""
    return score_leads_state(store, model, as_of, leads, sources, activity, scope)[0]


#: The rule state columns of a state query (``compile_model``'s ``state``), what the live rule cache keeps.
STATE_COLUMNS = ("ls_pts", "ls_hits", "ls_valid", "ls_moving", "ls_raw", "ls_last", "ls_last_activity",
                 "ls_agg_rule", "ls_agg_bucket", "ls_agg_value", "ls_agg_x")


def score_leads_state(store: Store, model: Model, as_of: datetime, leads: list[str] | None = None,
                      sources: Sources | None = None, activity: bool = False, scope: list[str] | None = None,
                      fresh: set[int] | None = None, cache: str | None = None, state: bool = False,
                      watermark: int | None = None, batch: pa.Table | None = None):
    """:func:`score_leads`, and with ``state`` also the rule state of each lead (an Arrow table of
    lead_id and the ``STATE_COLUMNS``; see ``compile_model``'s ``state``, ``fresh``, ``cache``,
    ``watermark`` and ``merge``, and :mod:`leadscore.engine.partial`); None without. ``batch``: the
    messages a merged re-score takes, rows of ``events`` with their ``lead_id`` (``compile_model``'s
    ``merge``; DuckDB; ``leadscore.engine.partial.batch_rows``)."""
    as_of = to_naive_utc(as_of)
    if batch is None and scope is None and leads is not None and sources is None and not _scan_beats_index(store, len(leads)):
        scope = lead_scope(store, leads)
    relations = {}
    if leads is not None and store.dialect.name == "duckdb":
        relations["_ls_leads_param"] = pa.table({"lead_id": pa.array(list(leads), pa.string())})
    if batch is not None:
        relations["_ls_batch_param"] = batch
    compiled = compile_model(model, store.dialect, as_of, leads=leads, sources=sources, scope=scope, activity=activity,
                             fresh=fresh, cache=cache, state=state, leads_table="_ls_leads_param" if relations else None,
                             watermark=watermark, merge=batch is not None,
                             batch_table="_ls_batch_param" if batch is not None else None)
    table = store.query_analytic(compiled.sql, relations)
    table = table.rename_columns([c.lower() for c in table.column_names])
    rule_state = table.select(["lead_id", *STATE_COLUMNS]) if state else None
    frame = _frame(model, table)
    if not compiled.uses_probability and sources is None and len(frame):
        # The predictive model's probability is shown beside the points score even when no stage reads it:
        # a targeted re-score (a live pass) reads its own leads' only, not every lead's prediction.
        if leads is None:
            probs = dict(store.query("SELECT lead_id, probability FROM lead_predictions"))
        else:
            with store.transaction() as conn:
                probs = dict(store._fetch_in(conn, "SELECT lead_id, probability FROM lead_predictions "
                                                   "WHERE lead_id IN {ids}", frame["lead_id"].tolist()))
        if probs:
            frame["probability"] = frame["lead_id"].map(probs).astype(float)
    return frame, rule_state


@dataclass
class RunResult:
    model_version: str
    as_of: datetime
    leads: int
    frame: pd.DataFrame


def save_scores(store: Store, model: Model, as_of: datetime, frame: pd.DataFrame, computed_at: datetime) -> int:
    """Store scores with their model version and as-of instant (replacing that pair's earlier run)."""
    version = model.model_version
    rules = [c for c in frame.columns if c.startswith("rule:")]
    groups = [c for c in frame.columns if c.startswith("group:")]
    rows = []
    for rec in frame.to_dict("records"):
        rows.append((rec["lead_id"], version, as_of, rec["score"], rec["fit"], rec["engagement"], rec["tier"],
                     rec["stage"], rec["grade"], bool(rec["disqualified"]),
                     json.dumps({g[6:]: rec[g] for g in groups}),
                     json.dumps({r[5:]: rec[r] for r in rules if rec[r] != 0}), computed_at))
    cols = ("lead_id", "model_version", "as_of", "score", "fit", "engagement", "tier", "stage", "grade",
            "disqualified", "groups", "rules", "computed_at")
    with store._lock, store.transaction() as conn:
        store._execute(conn, "DELETE FROM scores WHERE model_version = ? AND as_of = ?", (version, as_of))
        for start in range(0, len(rows), 50_000):
            store._bulk_insert(conn, "scores", cols, rows[start:start + 50_000], conflict="plain")
    return len(rows)


def score_and_save(store: Store, model: Model, as_of: datetime, computed_at: datetime | None = None) -> RunResult:
    as_of = to_naive_utc(as_of)
    frame = score_leads(store, model, as_of)
    save_scores(store, model, as_of, frame, computed_at or as_of)
    return RunResult(model.model_version, as_of, len(frame), frame)
