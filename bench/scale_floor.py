"""The floor: bench/playbook.yaml's rules as ONE hand-written DuckDB query over the Parquet log.

Written by hand, without the compiler, the way one would shape it for speed: one scan of the file
keeping only the event types some rule reads, every JSON property extracted once (one parse per
message; on a typed log, whose properties are a STRUCT, the fields read directly), one GROUP BY per
lead and channel, first/additional points by ``arg_min`` instead of a
window, the first N by a sliced ordered list. Its numbers must equal the engine's on every lead
(scale_bench.py checks); keep it in step with bench/playbook.yaml.
"""
from __future__ import annotations

from datetime import datetime

DAY = 86400.0


# The properties the rules read: (name, JSON path, typed field, numeric)
PROPS = [("path", "$.path", "properties.path", False), ("top", "$.time_on_page", "properties.time_on_page", True),
         ("scroll", "$.scroll_depth", "properties.scroll_depth", True),
         ("session_id", "$.session_id", "properties.session_id", False),
         ("email_id", "$.email_id", "properties.email_id", False),
         ("ctype", "$.campaign_type", "properties.campaign_type", False),
         ("cta_type", "$.cta_type", "properties.cta_type", False),
         ("seniority", "$.seniority", "properties.seniority", False),
         ("country", "$.address.country", "properties.address.country", False),
         ("email", "$.email", "properties.email", False)]
TRAITS = ("seniority", "country", "email")


def _props_sql(typed: bool) -> tuple[str, str]:
    """(the SELECT list of the property columns, the inner SELECT list they are read from).

    JSON text: every property extracted in one parse per message (a list), numbers cast from its
    text; a trait is present when its key is (json_exists). Typed (STRUCT) properties: the fields,
    read as they are; a trait is present when it is not null."""
    if typed:
        cols = ", ".join(f"{'CAST(' + f + ' AS DOUBLE)' if num else f} AS {n}" for n, _, f, num in PROPS)
        has = ", ".join(f"properties.{'address.country' if t == 'country' else t} IS NOT NULL" for t in TRAITS)
        return cols + f", CASE WHEN type = 'identify' THEN [{has}] END AS has", ""
    paths = ", ".join(f"'{j}'" for _, j, _, _ in PROPS)
    cols = ", ".join(f"{'try_cast(p[' + str(k + 1) + '] AS DOUBLE)' if num else 'p[' + str(k + 1) + ']'} AS {n}"
                     for k, (n, _, _, num) in enumerate(PROPS))
    exists = ", ".join(f"json_exists(properties, '{j}')" for n, j, _, _ in PROPS if n in TRAITS)
    return cols + ", has", (f", json_extract_string(properties, [{paths}]) AS p, "
                            f"CASE WHEN type = 'identify' THEN [{exists}] END AS has")


def floor_sql(files: list[str], as_of: datetime, leads: str | None = None, typed: bool = False) -> str:
    """The query; ``leads``: a relation (lead_id) to score only those leads (the agreement sample);
    ``typed``: the log's properties are a STRUCT (a typed log) instead of JSON text."""
    src = "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"
    if leads is not None:
        src = f"(SELECT * FROM {src} WHERE lead_id IN (SELECT lead_id FROM {leads}))"
    T = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S.%f}'"
    hl30 = f"power(0.5, greatest(age, 0) / {30 * DAY})"
    hl60 = f"power(0.5, greatest(age, 0) / {60 * DAY})"
    cols, inner = _props_sql(typed)
    age = f"(epoch_us({T}) - epoch_us(ts)) / 1e6 AS age"
    scan = f"""FROM {src}
    WHERE ts <= {T} AND lead_id IS NOT NULL
      AND (type IN ('page', 'identify') OR event IN ('Email Delivered', 'Email Opened', 'Email Link Clicked',
           'Email Replied', 'Demo Requested', 'Trial Started', 'Product Used', 'Form Submitted',
           'Resource Downloaded', 'Social Engaged', 'CTA Clicked', 'Meeting Booked'))"""
    if typed:
        ev = f"SELECT lead_id, message_id, ts, type, event, {age}, {cols}\n    {scan}"
    else:
        ev = (f"SELECT lead_id, message_id, ts, type, event, age, {cols} FROM (\n"
              f"    SELECT lead_id, message_id, ts, type, event, {age}{inner}\n    {scan}) j")
    return f"""
WITH ev AS (
    {ev}
),
pop AS (SELECT DISTINCT lead_id FROM {src} WHERE lead_id IS NOT NULL),
pg AS (
    SELECT lead_id, message_id, ts, age, path, top, scroll, session_id, {hl30} AS dec
    FROM ev WHERE type = 'page'
),
web AS (
    SELECT lead_id,
        round(sum(5 * dec) FILTER (WHERE path = '/'), 4) AS homepage,
        round(list_sum(list(10 * dec ORDER BY ts, message_id) FILTER (WHERE path LIKE '/blog/%')[1:5]), 4) AS blog,
        round(sum(20 * dec) FILTER (WHERE path LIKE '/pricing%'), 4) AS pricing,
        round(list_sum(list(25 * dec ORDER BY ts, message_id) FILTER (WHERE path LIKE '/docs/%')[1:3]), 4) AS docs,
        round(list_sum(list(30 * dec ORDER BY ts, message_id) FILTER (WHERE path LIKE '/case-studies/%')[1:2]), 4) AS cases,
        CASE WHEN count(*) FILTER (WHERE path LIKE '/careers%') > 0 THEN -10.0 ELSE 0 END AS careers,
        -5.0 * count(*) FILTER (WHERE age < {30 * DAY} AND top < 5) AS bounce,
        least(3.0 * count(*) FILTER (WHERE age < {30 * DAY} AND scroll >= 75 AND top >= 60), 15) AS deep,
        CASE WHEN count(DISTINCT CAST(ts AS DATE)) FILTER (WHERE age < {30 * DAY}) >= 3 THEN 10.0 ELSE 0 END AS returns,
        CASE WHEN min(age) >= {60 * DAY} THEN -10.0 ELSE 0 END AS inactive
    FROM pg GROUP BY lead_id
),
sess AS (
    SELECT lead_id, CASE WHEN max(n) >= 5 THEN 10.0 ELSE 0 END AS per_session
    FROM (SELECT lead_id, count(*) AS n FROM pg WHERE age < {30 * DAY} GROUP BY lead_id, session_id)
    GROUP BY lead_id
),
em AS (SELECT lead_id, message_id, ts, age, event, email_id, ctype FROM ev WHERE event LIKE 'Email %'),
sent AS (SELECT lead_id, email_id, min(ts) AS sent_ts FROM em
         WHERE event = 'Email Delivered' AND email_id IS NOT NULL GROUP BY lead_id, email_id),
resp AS (
    SELECT e.lead_id, e.event, e.email_id, e.ts, e.message_id,
           CASE WHEN s.sent_ts IS NULL THEN 1.0
                WHEN (epoch_us(e.ts) - epoch_us(s.sent_ts)) / 1e6 <= 3600 THEN 2.0
                WHEN (epoch_us(e.ts) - epoch_us(s.sent_ts)) / 1e6 <= 86400 THEN 1.5
                WHEN (epoch_us(e.ts) - epoch_us(s.sent_ts)) / 1e6 <= 172800 THEN 1.2 ELSE 1.0 END
         * CASE e.ctype WHEN 'cold_outreach' THEN 1.25 WHEN 'nurture' THEN 1.0 WHEN 'sales_follow_up' THEN 1.5 ELSE 1.0 END
         * CASE e.event WHEN 'Email Opened' THEN (CASE WHEN e.age > {30 * DAY} THEN 0.5 ELSE 1.0 END)
                        WHEN 'Email Link Clicked' THEN (CASE WHEN e.age > {14 * DAY} THEN 0.6 ELSE 1.0 END)
                        ELSE (CASE WHEN e.age > {60 * DAY} THEN 0.5 ELSE 1.0 END) END AS md
    FROM em e LEFT JOIN sent s ON s.lead_id = e.lead_id AND s.email_id = e.email_id
    WHERE e.event <> 'Email Delivered'
),
per_email AS (
    SELECT lead_id, event, arg_min(md, (ts, message_id)) AS first_md, sum(md) AS all_md
    FROM resp GROUP BY lead_id, event, email_id
),
email AS (
    SELECT lead_id,
        round(sum(5 * first_md + 2 * (all_md - first_md)) FILTER (WHERE event = 'Email Opened'), 4) AS opens,
        round(sum(15 * first_md + 5 * (all_md - first_md)) FILTER (WHERE event = 'Email Link Clicked'), 4) AS clicks,
        round(sum(30 * first_md + 10 * (all_md - first_md)) FILTER (WHERE event = 'Email Replied'), 4) AS replies
    FROM per_email GROUP BY lead_id
),
act AS (
    SELECT lead_id,
        CASE WHEN count(*) FILTER (WHERE event = 'Demo Requested') > 0 THEN 50.0 ELSE 0 END AS demo,
        CASE WHEN count(*) FILTER (WHERE event = 'Trial Started') > 0 THEN 30.0 ELSE 0 END AS trial,
        CASE WHEN count(DISTINCT CAST(ts AS DATE)) FILTER (WHERE event = 'Product Used') >= 3 THEN 20.0 ELSE 0 END AS active_trial,
        10.0 * least(count(*) FILTER (WHERE event = 'Form Submitted' AND age < {90 * DAY}), 3) AS forms,
        round(10 * arg_min({hl60}, (ts, message_id)) FILTER (WHERE event = 'Resource Downloaded')
              + 5 * (sum({hl60}) FILTER (WHERE event = 'Resource Downloaded')
                     - arg_min({hl60}, (ts, message_id)) FILTER (WHERE event = 'Resource Downloaded')), 4) AS downloads,
        round(sum(3 * {hl30}) FILTER (WHERE event = 'Social Engaged'), 4) AS social,
        10.0 * count(*) FILTER (WHERE event = 'CTA Clicked' AND cta_type = 'button')
          + 40.0 * count(*) FILTER (WHERE event = 'CTA Clicked' AND cta_type = 'meeting') AS cta,
        count(*) FILTER (WHERE event IN ('Demo Requested', 'Meeting Booked')) AS sql_events,
        arg_max(seniority, (ts, message_id)) FILTER (WHERE type = 'identify' AND has[1]) AS seniority_t,
        arg_max(country, (ts, message_id)) FILTER (WHERE type = 'identify' AND has[2]) AS country_t,
        arg_max(email, (ts, message_id)) FILTER (WHERE type = 'identify' AND has[3]) AS email_t
    FROM ev WHERE type <> 'page' GROUP BY lead_id
),
g AS (
    SELECT pop.lead_id,
        round(least(CASE WHEN a.seniority_t IN ('c_level', 'vp') THEN 30.0 WHEN a.seniority_t = 'director' THEN 20.0 ELSE 0 END, 45), 4) AS persona,
        round(least(CASE WHEN a.country_t IN ('US', 'GB', 'DE', 'FR', 'CA', 'AU', 'NL') THEN 10.0
                         WHEN a.country_t IS NOT NULL THEN -20.0 ELSE 0 END, 40), 4) AS company,
        round(least(coalesce(w.homepage, 0) + coalesce(w.blog, 0) + coalesce(w.pricing, 0) + coalesce(w.docs, 0)
                    + coalesce(w.cases, 0) + coalesce(w.careers, 0) + coalesce(w.bounce, 0) + coalesce(w.deep, 0)
                    + coalesce(w.returns, 0) + coalesce(w.inactive, 0) + coalesce(s.per_session, 0), 80), 4) AS web,
        round(least(coalesce(e.opens, 0) + coalesce(e.clicks, 0) + coalesce(e.replies, 0), 100), 4) AS email,
        round(coalesce(a.demo, 0) + coalesce(a.trial, 0) + coalesce(a.active_trial, 0) + coalesce(a.forms, 0), 4) AS product,
        round(least(coalesce(a.cta, 0), 60), 4) AS cta,
        round(least(coalesce(a.downloads, 0), 30), 4) AS downloads,
        round(least(coalesce(a.social, 0), 15), 4) AS social,
        coalesce(a.sql_events, 0) AS sql_events,
        a.email_t IS NOT NULL AND a.email_t <> '' AS is_lead
    FROM pop LEFT JOIN web w USING (lead_id) LEFT JOIN sess s USING (lead_id)
    LEFT JOIN email e USING (lead_id) LEFT JOIN act a USING (lead_id)
),
ax AS (
    SELECT lead_id, round(least(persona + company, 100), 4) AS fit,
           round(web + email + product + cta + downloads + social, 4) AS engagement, sql_events, is_lead
    FROM g
)
SELECT lead_id, round(fit + engagement, 4) AS score, fit, engagement,
       CASE WHEN round(fit + engagement, 4) >= 100 THEN 'hot' WHEN round(fit + engagement, 4) >= 40 THEN 'warm' ELSE 'cold' END AS tier,
       CASE WHEN is_lead AND fit >= 20 AND engagement >= 60 AND sql_events > 0 THEN 'SQL'
            WHEN is_lead AND fit >= 20 AND engagement >= 60 THEN 'MQL'
            WHEN is_lead THEN 'lead' ELSE 'subscriber' END AS stage
FROM ax
"""
