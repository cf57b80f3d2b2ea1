"""What an analyst would write: bench/playbook.yaml's rules in vectorised pandas.

Reads the Parquet log with pyarrow (only the columns and event types the rules need), parses the
JSON properties in one vectorised pass (pyarrow's JSON reader over the joined lines) — or, on a
typed log (properties a STRUCT), reads the fields the rules need as columns — then
groupby/transform per lead, e-mail and session. No Python loop per event. Its numbers must equal
the engine's and the hand-written query's (scale_bench.py checks); keep it in step with the model.
"""
from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.json as pajson

DAY = 86400.0
EVENTS = ["Email Delivered", "Email Opened", "Email Link Clicked", "Email Replied", "Demo Requested", "Trial Started",
          "Product Used", "Form Submitted", "Resource Downloaded", "Social Engaged", "CTA Clicked", "Meeting Booked"]
PROPS = pa.schema([("path", pa.string()), ("time_on_page", pa.float64()), ("scroll_depth", pa.float64()),
                   ("session_id", pa.string()), ("email_id", pa.string()), ("campaign_type", pa.string()),
                   ("cta_type", pa.string()), ("seniority", pa.string()), ("email", pa.string()),
                   ("address", pa.struct([("country", pa.string())]))])
SOLD = ["US", "GB", "DE", "FR", "CA", "AU", "NL"]


def _props(col: pa.ChunkedArray) -> pd.DataFrame:
    text = pc.fill_null(col, "{}").to_pylist()
    block = ("\n".join(text) + "\n").encode()
    t = pajson.read_json(io.BytesIO(block), parse_options=pajson.ParseOptions(
        explicit_schema=PROPS, unexpected_field_behavior="ignore", newlines_in_values=False))
    country = pc.struct_field(t.column("address"), "country")
    out = t.drop(["address"]).append_column("country", country)
    return out.to_pandas()


def _typed_columns() -> dict:
    """A typed log (properties a STRUCT): the property fields the rules read, projected by the scan
    itself (numbers as float64, as from the JSON)."""
    cols = {}
    for f in PROPS:
        if pa.types.is_struct(f.type):
            for sub in f.type:
                cols[sub.name] = ds.field("properties", f.name, sub.name)
        else:
            ref = ds.field("properties", f.name)
            cols[f.name] = ref.cast(pa.float64()) if pa.types.is_floating(f.type) else ref
    return cols


def pandas_scores(files: list[str], as_of: datetime, leads: set[str] | None = None,
                  typed: bool = False) -> pd.DataFrame:
    """``typed``: the log's properties are a STRUCT (a typed log): its fields are read as columns,
    with no JSON to parse."""
    dataset = ds.dataset(files, format="parquet")
    T = pd.Timestamp(as_of)
    flt = (ds.field("ts") <= pa.scalar(as_of, pa.timestamp("us"))) & ds.field("lead_id").is_valid() & (
        ds.field("type").isin(["page", "identify"]) | ds.field("event").isin(EVENTS))
    if leads is not None:
        flt = flt & ds.field("lead_id").isin(sorted(leads))
    base = ["lead_id", "message_id", "ts", "type", "event"]
    pop_flt = ds.field("lead_id").is_valid() if leads is None else ds.field("lead_id").isin(sorted(leads))
    pop = pd.Index(pc.unique(dataset.to_table(columns=["lead_id"], filter=pop_flt).column("lead_id")).to_pandas(),
                   name="lead_id")
    if typed:
        df = dataset.to_table(columns={**{c: ds.field(c) for c in base}, **_typed_columns()}, filter=flt).to_pandas()
    else:
        table = dataset.to_table(columns=base + ["properties"], filter=flt)
        df = table.drop(["properties"]).to_pandas()
        df = pd.concat([df, _props(table.column("properties"))], axis=1)
    df["age"] = (T - df["ts"]).dt.total_seconds()
    df = df.sort_values(["lead_id", "ts", "message_id"], kind="stable")
    out = pd.DataFrame(index=pop)

    def put(name: str, series: pd.Series) -> None:
        out[name] = series.reindex(pop).fillna(0.0).astype(float)

    # ---- web
    pg = df[df["type"] == "page"].copy()
    pg["dec"] = 0.5 ** (pg["age"].clip(lower=0) / (30 * DAY))
    path = pg["path"].fillna("")
    recent = pg["age"] < 30 * DAY
    web = pd.Series(0.0, index=pop)
    for pts, mask, limit in ((5, path == "/", None), (10, path.str.startswith("/blog/"), 5),
                             (20, path.str.startswith("/pricing"), None), (25, path.str.startswith("/docs/"), 3),
                             (30, path.str.startswith("/case-studies/"), 2)):
        sub = pg[mask.values]
        if limit is not None:
            sub = sub[sub.groupby("lead_id").cumcount() < limit]
        web = web.add((pts * sub["dec"]).groupby(sub["lead_id"]).sum().round(4), fill_value=0)
    careers = pg[path.str.startswith("/careers").values].groupby("lead_id").size()
    web = web.add((careers > 0) * -10.0, fill_value=0)
    web = web.add(-5.0 * pg[(recent & (pg["time_on_page"] < 5)).values].groupby("lead_id").size(), fill_value=0)
    deep = pg[(recent & (pg["scroll_depth"] >= 75) & (pg["time_on_page"] >= 60)).values].groupby("lead_id").size()
    web = web.add((3.0 * deep).clip(upper=15), fill_value=0)
    days = pg[recent.values].assign(day=lambda x: x["ts"].dt.normalize()).groupby("lead_id")["day"].nunique()
    web = web.add((days >= 3) * 10.0, fill_value=0)
    last = pg.groupby("lead_id")["age"].min()
    web = web.add((last >= 60 * DAY) * -10.0, fill_value=0)
    per_sess = pg[recent.values].groupby(["lead_id", pg.loc[recent.values, "session_id"].fillna("\0null")]).size()
    sess_max = per_sess.groupby(level=0).max()
    web = web.add((sess_max >= 5) * 10.0, fill_value=0)
    put("web", web.clip(upper=80).round(4))

    # ---- e-mail: response time to the matching Email Delivered, campaign, decay; first/additional per email_id
    em = df[df["event"].isin(["Email Delivered", "Email Opened", "Email Link Clicked", "Email Replied"]).values]
    sent = em[(em["event"] == "Email Delivered") & em["email_id"].notna()].groupby(["lead_id", "email_id"])["ts"].min()
    sent = sent.rename("sent_ts").reset_index()
    resp = em[em["event"] != "Email Delivered"].merge(sent, on=["lead_id", "email_id"], how="left")
    delta = (resp["ts"] - resp["sent_ts"]).dt.total_seconds()
    rt = np.select([resp["sent_ts"].isna(), delta <= 3600, delta <= 86400, delta <= 172800], [1.0, 2.0, 1.5, 1.2], 1.0)
    camp = resp["campaign_type"].map({"cold_outreach": 1.25, "nurture": 1.0, "sales_follow_up": 1.5}).fillna(1.0)
    after = resp["event"].map({"Email Opened": 30 * DAY, "Email Link Clicked": 14 * DAY, "Email Replied": 60 * DAY})
    keep = resp["event"].map({"Email Opened": 0.5, "Email Link Clicked": 0.6, "Email Replied": 0.5})
    dec = np.where(resp["age"] > after, keep, 1.0)
    resp = resp.assign(md=rt * camp.to_numpy() * dec).sort_values(["lead_id", "ts", "message_id"], kind="stable")
    resp["key"] = resp["email_id"].fillna("\0null")     # NULL e-mail ids count as one e-mail, as in SQL
    first = ~resp.duplicated(["lead_id", "event", "key"])
    pts = {"Email Opened": (5, 2), "Email Link Clicked": (15, 5), "Email Replied": (30, 10)}
    base = np.where(first, resp["event"].map({k: v[0] for k, v in pts.items()}),
                    resp["event"].map({k: v[1] for k, v in pts.items()}))
    resp = resp.assign(p=base * resp["md"])
    email = resp.groupby(["lead_id", "event"])["p"].sum().round(4).groupby(level=0).sum()
    put("email", email.clip(upper=100).round(4))

    # ---- product, downloads, social, CTA
    ev = df[df["type"] != "page"]
    by = lambda name: ev[ev["event"] == name]  # noqa: E731
    product = (by("Demo Requested").groupby("lead_id").size() > 0) * 50.0
    product = product.add((by("Trial Started").groupby("lead_id").size() > 0) * 30.0, fill_value=0)
    used = by("Product Used")
    product = product.add((used.assign(day=used["ts"].dt.normalize()).groupby("lead_id")["day"].nunique() >= 3) * 20.0, fill_value=0)
    forms = by("Form Submitted")
    product = product.add(10.0 * forms[forms["age"] < 90 * DAY].groupby("lead_id").size().clip(upper=3), fill_value=0)
    put("product", product.round(4))
    dl = by("Resource Downloaded").copy()
    dl["d"] = 0.5 ** (dl["age"].clip(lower=0) / (60 * DAY))
    dl["p"] = np.where(~dl.duplicated("lead_id"), 10.0, 5.0) * dl["d"]
    put("downloads", dl.groupby("lead_id")["p"].sum().round(4).clip(upper=30).round(4))
    so = by("Social Engaged")
    put("social", (3 * 0.5 ** (so["age"].clip(lower=0) / (30 * DAY))).groupby(so["lead_id"]).sum().round(4).clip(upper=15).round(4))
    cta = by("CTA Clicked")
    cta_pts = cta["cta_type"].map({"button": 10.0, "meeting": 40.0}).fillna(0.0)
    put("cta", cta_pts.groupby(cta["lead_id"]).sum().clip(upper=60).round(4))
    sql_events = ev[ev["event"].isin(["Demo Requested", "Meeting Booked"])].groupby("lead_id").size()

    # ---- traits: the newest identify carrying each key
    ids = ev[ev["type"] == "identify"]
    newest = lambda col: ids[ids[col].notna()].groupby("lead_id")[col].last()  # noqa: E731
    seniority, country, mail = newest("seniority"), newest("country"), newest("email")
    sen = seniority.reindex(pop)
    persona = np.select([sen.isin(["c_level", "vp"]), sen == "director"], [30.0, 20.0], 0.0)
    ctry = country.reindex(pop)
    company = np.select([ctry.isin(SOLD), ctry.notna()], [10.0, -20.0], 0.0)
    out["persona"] = np.minimum(persona, 45).round(4)
    out["company"] = np.minimum(company, 40).round(4)

    fit = np.minimum(out["persona"] + out["company"], 100).round(4)
    engagement = (out["web"] + out["email"] + out["product"] + out["cta"] + out["downloads"] + out["social"]).round(4)
    score = (fit + engagement).round(4)
    m = mail.reindex(pop)
    is_lead = (m.notna() & (m != "")).to_numpy()
    mql = is_lead & (fit >= 20).to_numpy() & (engagement >= 60).to_numpy()
    sql = mql & (sql_events.reindex(pop).fillna(0) > 0).to_numpy()
    res = pd.DataFrame({"lead_id": pop, "score": score.to_numpy(), "fit": fit.to_numpy(),
                        "engagement": engagement.to_numpy()})
    res["tier"] = np.select([res["score"] >= 100, res["score"] >= 40], ["hot", "warm"], "cold")
    res["stage"] = np.select([sql, mql, is_lead], ["SQL", "MQL", "lead"], "subscriber")
    return res.reset_index(drop=True)
