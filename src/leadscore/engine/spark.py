"""Scoring a Parquet event log with Spark: the SAME compiled SQL (``compile_model`` with the SPARK
dialect), run by ``spark.sql`` over temporary views.

The views are those of :func:`leadscore.engine.parquet.log_views` (traits from the identify
events, accounts from group events, the population from the log), so DuckDB over Parquet and Spark
read one definition. Locally, ``local[2]`` with a small driver; on a cluster, pass the session
``spark-submit`` made (see docs/spark.md). Scores come back as the engine's frame and can be written
to Parquet (a local file, or any Hadoop URI such as ``s3a://bucket/scores/``).
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from leadscore.engine.access import LOG_JSON_COLUMNS, PropertyAccess, PropertyTypeError, spark_shape
from leadscore.engine.compile import compile_model
from leadscore.engine.parquet import (
    LOG_SOURCES, PREDICTIONS_SCHEMA, EventLogError, browser_table, catalog_table, check_columns, disposable_table,
    lead_ua_sql, log_views, model_trait_keys,
)
from leadscore.engine.score import _frame, to_naive_utc
from leadscore.model.schema import Model
from leadscore.store.dialect import SPARK

SPARK_CONF = {
    "spark.sql.session.timeZone": "UTC",                 # timestamps are naive UTC throughout
    "spark.sql.parser.escapedStringLiterals": "true",    # a backslash in a regex literal stays a backslash
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "3g",                          # the default model's plan needs headroom (2g ran out analysing it)
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
}
_SESSION = None
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def spark_session(master: str = "local[2]", conf: dict[str, str] | None = None):
    """The process's Spark session (created once): local[2] with a 1 GB driver unless told otherwise.
    When a session already exists (spark-submit made it), it is reused and only the SQL settings
    leadscore relies on are applied."""
    global _SESSION
    from pyspark.sql import SparkSession
    active = SparkSession.getActiveSession()
    if active is not None:
        _SESSION = active
    if _SESSION is None:
        builder = SparkSession.builder.master(master).appName("leadscore")
        for k, v in {**SPARK_CONF, **(conf or {})}.items():
            builder = builder.config(k, v)
        _SESSION = builder.getOrCreate()
        _SESSION.sparkContext.setLogLevel("ERROR")
    for k in ("spark.sql.session.timeZone", "spark.sql.parser.escapedStringLiterals"):
        _SESSION.conf.set(k, SPARK_CONF[k])
    return _SESSION


def stop_session() -> None:
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
        _SESSION = None


def spark_literals(sql: str) -> str:
    """Rewrite the ANSI ``'it''s'`` literals the compiler writes for Spark's lexer.

    With ``spark.sql.parser.escapedStringLiterals`` Spark reads a string literal verbatim, so a
    doubled quote is two quotes; a literal holding a quote is written in double quotes instead
    (Spark's other string-literal form). Hand-written because no SQL library here rewrites literals
    for Spark's lexer; it walks the text once and leaves everything outside literals untouched."""
    out, i, n = [], 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == '"':                       # an identifier or double-quoted literal: copy through
            j = sql.index('"', i + 1) if '"' in sql[i + 1:] else n - 1
            out.append(sql[i:j + 1])
            i = j + 1
            continue
        if ch != "'":
            out.append(ch)
            i += 1
            continue
        j, buf = i + 1, []
        while j < n:
            if sql[j] == "'":
                if j + 1 < n and sql[j + 1] == "'":
                    buf.append("'")
                    j += 2
                    continue
                break
            buf.append(sql[j])
            j += 1
        text = "".join(buf)
        if "'" not in text:
            out.append("'" + text + "'")
        elif '"' in text:
            raise ValueError(f"a literal holding both quote characters cannot be written for Spark: {text!r}")
        else:
            out.append('"' + text + '"')
        i = j + 1
    return "".join(out)


# Shared CTEs Spark should compute once: Spark inlines a CTE into every reference, so without this
# each of the ~40 rules would re-read the log and re-parse its JSON (and the video facts).
# Each rule's occurrences/results (r<i>_p, r<i>_q) and each stage flag (f<k>_c) are cached too: the
# final statement then stacks small cached tables, and Spark's analyser does not have to hold the
# whole inlined plan at once (it ran out of a 1 GB heap on the default model otherwise).
MATERIALISE = ("pop", "ev", "tr", "ac", "lt", "ev_video", "vv")
_MATERIALISE_RE = re.compile(r"^(r\d+_[pq]|f\d+_c)$")
_CTE_START = re.compile(r"^(?:WITH |,\n)?(?P<name>(?!lsv_)\w+) AS \(", re.M)


def split_ctes(sql: str) -> tuple[list[tuple[str, str]], str]:
    """The compiled query's top-level CTEs [(name, body)] and its final SELECT.

    The compiler writes one CTE per line start (``name AS (...)`` joined by ``,\n``); the video
    facts' own CTEs (``lsv_*``) stay inside their parent's body."""
    assert sql.startswith("WITH ")
    starts = [m for m in _CTE_START.finditer(sql) if m.start() == 0 or sql[m.start() - 2:m.start()] == ",\n"]
    ctes = []
    for k, m in enumerate(starts):
        end = starts[k + 1].start() - 2 if k + 1 < len(starts) else sql.rindex("\nSELECT ")
        body = sql[m.end():end]
        if not body.endswith(")"):
            raise ValueError(f"cannot split the compiled query at CTE {m.group('name')}")
        ctes.append((m.group("name"), body[:-1]))
    return ctes, sql[sql.rindex("\nSELECT ") + 1:]


def run_compiled(spark, sql: str, cached: list | None = None):
    """Run a compiled query on Spark, computing the shared CTEs once (cached temp views, in order)
    and the rest as one statement. ``cached`` collects the views to uncache afterwards."""
    ctes, final = split_ctes(spark_literals(sql))
    rest: list[tuple[str, str]] = []
    for name, body in ctes:
        if name in MATERIALISE or _MATERIALISE_RE.match(name):
            needed = _needed(body, rest)
            if needed:   # the not-cached CTEs it reads come along in its own WITH
                defs = ",\n".join(f"{n} AS ({b})" for n, b in needed)
                spark.sql(f"CACHE TABLE {name} AS WITH {defs},\nls_body AS ({body})\nSELECT * FROM ls_body")
            else:
                spark.sql(f"CACHE TABLE {name} AS {body}")
            if cached is not None:
                cached.append(name)
        else:
            rest.append((name, body))
    # Only the CTEs the final statement still reads: Spark analyses every CTE given to it, and the ~80
    # already cached ones' inputs made it run out of a 1 GB driver heap.
    rest = _needed(final, rest)
    query = ("WITH " + ",\n".join(f"{n} AS ({b})" for n, b in rest) + "\n" if rest else "") + final
    return spark.sql(query)


def _needed(body: str, defined: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The CTEs of ``defined`` that ``body`` reads, directly or through each other, in their order."""
    bodies = dict(defined)
    want, todo = set(), [body]
    while todo:
        text = todo.pop()
        for n in bodies:
            if n not in want and re.search(rf"\b{n}\b", text):
                want.add(n)
                todo.append(bodies[n])
    return [(n, b) for n, b in defined if n in want]


def _files(events_path: str | Path) -> list[str]:
    p = str(events_path)
    if _REMOTE.match(p):
        return [p]                          # object storage: Spark lists it
    from leadscore.engine.parquet import parquet_files
    return parquet_files(p)


def register_log_spark(spark, model: Model, events_path: str | Path, as_of: datetime,
                       catalog: str | Path | None = None, cached: list | None = None):
    """Temp views over the Parquet log on a Spark session; returns the Sources for compile_model.
    ``cached`` collects the names of the tables cached on the way (to uncache when done)."""
    d = SPARK
    as_of = to_naive_utc(as_of)
    files = _files(events_path)
    raw = spark.read.parquet(*files)
    has_lead = check_columns(events_path, raw.columns)
    if (len(files) > 1 or _REMOTE.match(str(events_path))) and any(
            raw.schema[c].dataType.typeName() == "struct" for c in LOG_JSON_COLUMNS):
        # a typed log's files may each have their own struct fields: merged (else the first file's win)
        raw = spark.read.option("mergeSchema", "true").parquet(*files)
    try:   # JSON text or typed (struct) properties/context: read by field when typed
        access = PropertyAccess({c: spark_shape(c, raw.schema[c].dataType) for c in LOG_JSON_COLUMNS})
    except PropertyTypeError as exc:
        raise EventLogError(f"{events_path}: {exc}") from None
    raw.createOrReplaceTempView("ls_raw")
    as_of_sql = d.ts_literal(as_of.strftime("%Y-%m-%d %H:%M:%S.%f"))
    keys = model_trait_keys(model)

    def table(name: str, arrow) -> None:
        spark.createDataFrame(arrow.to_pandas(), schema=_spark_schema(arrow.schema)).createOrReplaceTempView(name)

    local = None if _REMOTE.match(str(events_path)) else events_path
    table("video_catalog", catalog_table(local or ".", catalog) if (local or catalog) else catalog_table(".", None))
    table("ref_disposable_domains", disposable_table())
    table("lead_predictions", PREDICTIONS_SCHEMA.empty_table())
    views = log_views(d, "ls_raw", as_of_sql, has_lead, keys, "ls_lead_browser" if "browser" in keys else None,
                      access=access)
    spark.sql(f"CREATE OR REPLACE TEMP VIEW ls_events AS {spark_literals(views.views[0][1])}")
    if "browser" in keys:
        spark.sql(f"CACHE TABLE ls_lead_ua AS {spark_literals(lead_ua_sql(d, as_of_sql, access))}")
        if cached is not None:
            cached.append("ls_lead_ua")
        uas = [r[0] for r in spark.sql("SELECT DISTINCT ua FROM ls_lead_ua").collect()]
        table("ls_ua", browser_table(uas))
        spark.sql("CREATE OR REPLACE TEMP VIEW ls_lead_browser AS SELECT l.lead_id, l.ua_ts, l.ua_mid, u.browser "
                  "FROM ls_lead_ua l JOIN ls_ua u ON u.ua = l.ua")
    for name, sql in views.views[1:]:
        spark.sql(f"CREATE OR REPLACE TEMP VIEW {name} AS {spark_literals(sql)}")
    return replace(LOG_SOURCES, access=access) if access.any_typed else LOG_SOURCES


def _spark_schema(schema):
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType
    types = {"string": StringType(), "double": DoubleType()}
    return StructType([StructField(f.name, types[str(f.type)], True) for f in schema])


def score_parquet_with_spark(model: Model, events_path: str | Path, as_of: datetime, out: str | Path | None = None,
                             spark=None, catalog: str | Path | None = None,
                             leads: list[str] | None = None) -> pd.DataFrame:
    """Score a Parquet event log (file, folder or object-storage URI) with Spark SQL, as of an instant.

    Returns the frame :func:`leadscore.engine.score.score_leads` returns. With ``out``, the scores
    are also written as Parquet: a local path gets one file (written whole, then renamed into place);
    a URI (``s3a://``, ``hdfs://``, ``gs://``...) is written by Spark's own writer, partitioned."""
    as_of = to_naive_utc(as_of)
    spark = spark or spark_session()
    cached: list[str] = []
    try:
        sources = register_log_spark(spark, model, events_path, as_of, catalog, cached)
        compiled = compile_model(model, SPARK, as_of, leads=leads, sources=sources)
        result = run_compiled(spark, compiled.sql, cached)
        if out is not None and _REMOTE.match(str(out)):
            result.write.mode("overwrite").parquet(str(out))
        frame = _frame(model, result.toPandas())
    finally:
        for name in reversed(cached):           # the later ones read the earlier ones
            spark.sql(f"UNCACHE TABLE IF EXISTS {name}")
        for name in reversed(cached):           # CACHE TABLE made each a view: a next run on this session makes them again
            spark.catalog.dropTempView(name)
    if out is not None and not _REMOTE.match(str(out)):
        write_scores_parquet(frame, out)
    return frame


def write_scores_parquet(frame: pd.DataFrame, out: str | Path) -> Path:
    """The score frame as one Parquet file, written to a temporary name and renamed (whole or not at all)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = Path(out)
    if path.is_dir():
        raise EventLogError(f"{out}: is a folder; give the Parquet file to write the scores to")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
