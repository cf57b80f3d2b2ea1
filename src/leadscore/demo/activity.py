"""What the leads of one chunk do over the year: web, e-mail, video, downloads, social, product and
sales outcomes, drawn per event kind as whole arrays (no Python loop per lead or per event).

Intent drives everything: more sessions and deeper pages, more bottom-of-funnel pages and videos,
more opens, clicks and replies, demo requests, trials and meetings, and finally the opportunity's
outcome. Noise everywhere keeps it from being a perfect signal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.demo import pools
from leadscore.demo.catalog import STAGES, VIDEOS
from leadscore.demo.jsontext import Raw, obj
from leadscore.demo.population import Population, join, num_text, pick, ragged, strs

DAY = 86400.0
HOUR = 3600.0

PAGE_NAMES = ("Home", "Blog", "Pricing", "Docs", "Case Study", "Careers")
# (type, event, name) of every kind of message the demo writes; the index is its code.
VOCAB: tuple[tuple[str, str | None, str | None], ...] = (
    ("identify", None, None), ("group", None, None),
    *[("page", None, name) for name in PAGE_NAMES],
    *[("track", e, None) for e in (
        "Form Submitted", "Email Delivered", "Email Opened", "Email Link Clicked", "Email Replied",
        "Demo Requested", "Meeting Booked", "Trial Started", "Product Used", "Resource Downloaded",
        "Social Engaged", "Video Playback Started", "Video Content Started", "Video Content Playing",
        "Video Playback Paused", "Video Playback Resumed", "Video Playback Seek Started",
        "Video Playback Seek Completed", "Video Content Completed", "Video Playback Completed",
        "Video Playback Exited", "CTA Clicked", "Opportunity Won", "Opportunity Lost")],
)
CODE = {(e or n or t): i for i, (t, e, n) in enumerate(VOCAB)}
CODE["identify"], CODE["group"] = 0, 1
PAGE_CODE0 = CODE["Home"]

# Which context a message carries, and which ids.
CTX_WEB, CTX_EMAIL, CTX_SERVER = 0, 1, 2
ID_USER, ID_ANON, ID_BOTH, ID_GROUP = 0, 1, 2, 3

_PAGES = ([(0, "/", "Home")]
          + [(1, f"/blog/{s}", "Blog: " + s.replace("-", " ")) for s in pools.BLOG_SLUGS]
          + [(2, "/pricing", "Pricing")]
          + [(3, f"/docs/{s}", "Docs: " + s) for s in pools.DOCS_SLUGS]
          + [(4, f"/case-studies/{s}", "Case study: " + s.replace("-", " ")) for s in pools.CASE_SLUGS]
          + [(5, f"/careers{s}", "Careers") for s in pools.CAREER_SLUGS])
_PAGE_CAT = np.array([p[0] for p in _PAGES])
_PAGE_COUNT = np.bincount(_PAGE_CAT)
_PAGE_OFF = np.cumsum(_PAGE_COUNT) - _PAGE_COUNT
PAGE_LOW = np.array([0.30, 0.40, 0.05, 0.05, 0.04, 0.16])    # where a lead with no intent goes
PAGE_HIGH = np.array([0.10, 0.16, 0.24, 0.24, 0.22, 0.04])   # and one with full intent

_STAGE_LOW = np.array([0.47, 0.33, 0.12, 0.08])              # top, middle, bottom, retention
_STAGE_HIGH = np.array([0.12, 0.33, 0.47, 0.08])
_VID_STAGE = np.array([STAGES.index(v.stage) for v in VIDEOS])
_VID_ORDER = np.argsort(_VID_STAGE, kind="stable")
_VID_COUNT = np.bincount(_VID_STAGE, minlength=len(STAGES))
_VID_OFF = np.cumsum(_VID_COUNT) - _VID_COUNT
_VID_LEN = np.array([v.duration for v in VIDEOS])
_CTA_STAGE_MULT = np.array([0.5, 1.0, 1.6, 0.6])

_CAMP_TYPE = np.array([("cold_outreach", "nurture", "sales_follow_up").index(c[1]) for c in pools.CAMPAIGNS])
_COLD = np.flatnonzero(_CAMP_TYPE == 0)
_NURTURE = np.flatnonzero(_CAMP_TYPE == 1)
_SALES = np.flatnonzero(_CAMP_TYPE == 2)


@dataclass
class Part:
    code: np.ndarray | int
    lead: np.ndarray
    t: np.ndarray
    props: pa.Array
    ctx: int
    ids: int


@dataclass
class Activity:
    parts: list[Part] = field(default_factory=list)
    outcome: np.ndarray | None = None      # 0 none, 1 open opportunity, 2 won, 3 lost
    outcome_t: np.ndarray | None = None    # seconds since the epoch (NaN without an outcome)

    def add(self, code, lead, t, props, ctx=CTX_WEB, ids=ID_USER) -> None:
        if len(lead):
            self.parts.append(Part(code, np.asarray(lead), np.asarray(t, dtype=np.float64), props, ctx, ids))


@dataclass
class Timeline:
    start: float
    end: float
    t_id: np.ndarray          # when the lead identified itself
    win_end: np.ndarray       # end of its active buying journey
    span: np.ndarray
    burst: np.ndarray         # centre of its busiest stretch
    p_burst: np.ndarray

    def times(self, rng: np.random.Generator, lead: np.ndarray) -> np.ndarray:
        """Times of activity for these leads: spread over the journey, part of it in a burst."""
        m = len(lead)
        spread = self.t_id[lead] + rng.random(m) * self.span[lead]
        bursty = self.burst[lead] + rng.normal(0, 3 * DAY, m)
        lo, hi = self.t_id[lead] + 60, np.maximum(self.win_end[lead], self.t_id[lead] + 60)
        inside = (bursty >= lo) & (bursty <= hi)
        t = np.where((rng.random(m) < self.p_burst[lead]) & inside, bursty, spread)
        return np.clip(t, lo, hi)

    def journey(self, rng: np.random.Generator, lead: np.ndarray, a: float, b: float) -> np.ndarray:
        """A point of the journey at a Beta(a, b) fraction: late for bottom-of-funnel steps."""
        return self.t_id[lead] + 60 + rng.beta(a, b, len(lead)) * self.span[lead]


def _ids(prefix: str, pop: Population, lead: np.ndarray, k: np.ndarray) -> pa.Array:
    return join(prefix, pop.lead_num.take(pa.array(lead)), "-", num_text(k))


def _take(values, idx: np.ndarray) -> pa.Array:
    return (values if isinstance(values, pa.Array) else strs(values)).take(pa.array(idx))


def _count(rng: np.random.Generator, lam: np.ndarray, cap: int) -> np.ndarray:
    return np.minimum(rng.poisson(np.maximum(lam, 0)), cap)


def draw_activity(rng: np.random.Generator, pop: Population, start: float, end: float) -> Activity:
    n, intent = pop.n, pop.intent
    act = Activity()
    year = end - start
    t_id = start + rng.random(n) * (year - 2 * DAY)
    span = np.minimum(14 * DAY + rng.beta(1.5, 2.5, n) * 330 * DAY, end - t_id - 60)
    tl = Timeline(start, end, t_id, t_id + span, span, t_id + rng.beta(3, 2, n) * span, 0.15 + 0.5 * intent)
    leads = np.arange(n)

    # Identify (links the anonymous id), the account, and the form that identified most of them.
    act.add(CODE["identify"], leads, t_id, pop.identify_traits, CTX_WEB, ID_BOTH)
    act.add(CODE["group"], leads, t_id + 2, pop.group_traits, CTX_SERVER, ID_GROUP)
    cold_list = rng.random(n) < 0.35          # bought/outbound lists: identified by import, cold e-mails
    form_leads = leads[~cold_list]
    act.add(CODE["Form Submitted"], form_leads, t_id[form_leads] - 1,
            obj(len(form_leads), [("form_id", _take(pools.FORM_IDS, rng.integers(0, 4, len(form_leads)))),
                                  ("page", "/")]))

    _pages(rng, pop, tl, act)
    demo, meeting, trial = _product(rng, pop, tl, act)
    _emails(rng, pop, tl, act, cold_list, demo, meeting, trial)
    _content(rng, pop, tl, act)
    _videos(rng, pop, tl, act)
    _opportunities(rng, pop, tl, act, demo, meeting, trial)
    return act


def _pages(rng, pop: Population, tl: Timeline, act: Activity) -> None:
    intent = pop.intent
    n = pop.n
    # Anonymous visits before the lead identified itself, then identified sessions over the journey.
    n_anon = _count(rng, 0.5 + 1.5 * intent, 6)
    n_sess = _count(rng, 0.8 + 9.0 * intent ** 1.1, 40)
    a_lead, _ = ragged(n_anon)
    s_lead, _ = ragged(n_sess)
    a_t = np.maximum(tl.t_id[a_lead] - rng.uniform(0.2 * HOUR, 40 * DAY, len(a_lead)), tl.start)
    lead = np.concatenate([a_lead, s_lead])
    t0 = np.concatenate([a_t, tl.times(rng, s_lead)])
    anon = np.concatenate([np.ones(len(a_lead), bool), np.zeros(len(s_lead), bool)])
    order = np.lexsort((t0, lead))
    lead, t0, anon = lead[order], t0[order], anon[order]
    sess_k = ragged(np.bincount(lead, minlength=n))[1]
    li = intent[lead]

    pages = np.minimum(1 + rng.poisson(0.4 + 2.8 * li), 15)
    sess, k_in = ragged(pages)
    m = len(sess)
    pi = li[sess]
    cat = pick(rng, PAGE_LOW[None, :] * (1 - pi[:, None]) + PAGE_HIGH[None, :] * pi[:, None])
    page = _PAGE_OFF[cat] + (rng.random(m) * _PAGE_COUNT[cat]).astype(np.int64)
    bounce = rng.random(m) < 0.05 + 0.3 * (1 - pi) ** 2 + 0.1 * (cat == 5)
    top = np.where(bounce, rng.uniform(0.5, 4.8, m),
                   np.clip(rng.lognormal(np.log(30 + 70 * pi), 0.8), 5.0, 1800.0))
    top = np.round(top, 1)
    scroll = np.where(bounce, rng.integers(0, 21, m),
                      np.clip(np.round(100 * rng.beta(1.2 + 3 * pi, 1.5)), 5, 100)).astype(np.int64)
    # Pages of a session follow each other: the time before a page is what was spent on the earlier ones.
    step = top + rng.uniform(1.0, 6.0, m)
    csum = np.cumsum(step) - step
    first_of = np.cumsum(pages) - pages
    offset = csum - np.repeat(csum[first_of], pages)
    t = t0[sess] + offset

    paths = strs(p[1] for p in _PAGES)
    urls = join(pools.SITE, paths)
    url = urls.take(pa.array(page))
    prev = np.concatenate([[0], page[:-1]])
    ext_ref = _take(pools.REFERRERS, rng.integers(0, len(pools.REFERRERS), m))
    referrer = pc.if_else(pa.array(k_in == 0), ext_ref, urls.take(pa.array(prev)))
    sid = _ids("ws-", pop, lead, sess_k)
    props = obj(m, [("path", paths.take(pa.array(page))), ("url", url),
                    ("title", _take([p[2] for p in _PAGES], page)), ("referrer", referrer),
                    ("session_id", sid.take(pa.array(sess))), ("time_on_page", top),
                    ("scroll_depth", scroll)])
    a = anon[sess]
    code = PAGE_CODE0 + _PAGE_CAT[page]
    for mask, ids in ((a, ID_ANON), (~a, ID_USER)):
        idx = np.flatnonzero(mask)
        act.add(code[idx], lead[sess][idx], t[idx], props.take(pa.array(idx)), CTX_WEB, ids)


def _product(rng, pop: Population, tl: Timeline, act: Activity):
    intent, n = pop.intent, pop.n
    leads = np.arange(n)
    nan = np.full(n, np.nan)
    demo = rng.random(n) < 0.01 + 0.6 * intent ** 2.2
    meet_p = 0.008 + 0.3 * intent ** 2 + 0.35 * demo * intent
    meeting = rng.random(n) < meet_p
    trial = rng.random(n) < 0.02 + 0.45 * intent ** 1.5
    t_demo = np.where(demo, tl.journey(rng, leads, 4, 2), nan)
    t_meet = np.where(meeting, np.where(demo, t_demo + rng.uniform(1, 8, n) * DAY, tl.journey(rng, leads, 4, 2)), nan)
    t_trial = np.where(trial, tl.journey(rng, leads, 3, 2), nan)

    d = np.flatnonzero(demo)
    act.add(CODE["Demo Requested"], d, t_demo[d],
            obj(len(d), [("source", _take(pools.DEMO_SOURCES, rng.integers(0, len(pools.DEMO_SOURCES), len(d))))]))
    mt = np.flatnonzero(meeting)
    act.add(CODE["Meeting Booked"], mt, t_meet[mt],
            obj(len(mt), [("meeting_type", _take(pools.MEETING_TYPES, rng.integers(0, len(pools.MEETING_TYPES), len(mt)))),
                          ("duration_minutes", rng.choice([15, 30, 45, 60], len(mt)))]), CTX_SERVER)
    tr = np.flatnonzero(trial)
    start_date = np.datetime_as_string((t_trial[tr] * 1000).astype("datetime64[ms]"), unit="D")
    end_date = np.datetime_as_string((t_trial[tr] * 1000).astype("datetime64[ms]") + np.timedelta64(14, "D"), unit="D")
    act.add(CODE["Trial Started"], tr, t_trial[tr],
            obj(len(tr), [("trial_plan_name", _take(pools.TRIAL_PLANS, rng.choice(3, len(tr), p=[0.5, 0.35, 0.15]))),
                          ("trial_start_date", pa.array(start_date)), ("trial_end_date", pa.array(end_date))]),
            CTX_SERVER)

    # Product usage on distinct days of the 14-day trial.
    days = np.minimum(rng.poisson(0.3 + 8.0 * intent[tr] ** 1.2), 14)
    order = np.argsort(rng.random((len(tr), 14)), axis=1)
    chosen = order[np.arange(14)[None, :] < days[:, None]]
    day_lead = np.repeat(tr, days)
    per_day = np.minimum(1 + rng.poisson(1.2 * intent[day_lead]), 5)
    u_day, k = ragged(per_day)
    ul = day_lead[u_day]
    t = (t_trial[ul] + chosen[u_day] * DAY + HOUR + rng.uniform(0, 9 * HOUR, len(ul)) + k * rng.uniform(300, 2400, len(ul)))
    act.add(CODE["Product Used"], ul, t,
            obj(len(ul), [("feature", _take(pools.PRODUCT_FEATURES, rng.integers(0, len(pools.PRODUCT_FEATURES), len(ul))))]),
            CTX_WEB)
    return np.where(demo, t_demo, nan), np.where(meeting, t_meet, nan), np.where(trial, t_trial, nan)


def _business_hours(rng, t: np.ndarray) -> np.ndarray:
    day = np.floor(t / DAY) * DAY
    return day + 13 * HOUR + rng.uniform(0, 4 * HOUR, len(t))


def _emails(rng, pop: Population, tl: Timeline, act: Activity, cold_list, t_demo, t_meet, t_trial) -> None:
    intent, n = pop.intent, pop.n
    # Cold outreach sequences to listed leads, a monthly-ish nurture stream, sales follow-ups.
    n_cold = np.where(cold_list, 1 + np.minimum(rng.poisson(1.3, n), 3), 0)
    c_lead, c_k = ragged(n_cold)
    c_t = tl.t_id[c_lead] + 0.5 * DAY + c_k * rng.uniform(3, 7, len(c_lead)) * DAY
    quarter = np.clip(((c_t - tl.start) / (tl.end - tl.start) * 4).astype(np.int64), 0, 3)
    c_camp = _COLD[quarter]

    n_nur = _count(rng, (tl.end - tl.t_id) / DAY / 30 * 0.9, 12)
    u_lead, _ = ragged(n_nur)
    u_t = tl.t_id[u_lead] + DAY + rng.random(len(u_lead)) * (tl.end - tl.t_id[u_lead] - DAY)
    u_camp = _NURTURE[rng.integers(0, len(_NURTURE), len(u_lead))]

    trigger = np.fmin(np.fmin(t_demo, t_meet), t_trial)
    has = ~np.isnan(trigger)
    n_sales = np.where(has, 1 + np.minimum(rng.poisson(0.8, n), 2), 0)
    s_lead, s_k = ragged(n_sales)
    s_t = trigger[s_lead] + (s_k + rng.uniform(0.2, 1.0, len(s_lead))) * rng.uniform(1, 4, len(s_lead)) * DAY
    s_camp = _SALES[np.minimum(s_k, 2)]

    lead = np.concatenate([c_lead, u_lead, s_lead])
    sent = _business_hours(rng, np.concatenate([c_t, u_t, s_t]))
    sent = np.where(sent < tl.t_id[lead], sent + DAY, sent)
    camp = np.concatenate([c_camp, u_camp, s_camp])
    order = np.lexsort((sent, lead))
    lead, sent, camp = lead[order], sent[order], camp[order]
    ctype = _CAMP_TYPE[camp]
    m = len(lead)
    k = ragged(np.bincount(lead, minlength=n))[1]
    li = intent[lead]
    engaged = np.where(sent <= tl.win_end[lead], 1.0, 0.35)    # after the journey, mail is mostly ignored

    email_id = _ids("em-", pop, lead, k)
    base = [("email_id", email_id), ("email_subject", _take([c[3] for c in pools.CAMPAIGNS], camp)),
            ("campaign_id", _take([c[0] for c in pools.CAMPAIGNS], camp)),
            ("campaign_name", _take([c[2] for c in pools.CAMPAIGNS], camp)),
            ("campaign_type", _take([c[1] for c in pools.CAMPAIGNS], camp))]
    props = obj(m, base)
    act.add(CODE["Email Delivered"], lead, sent, props, CTX_EMAIL)

    p_open = (np.array([0.10, 0.14, 0.35])[ctype] + np.array([0.45, 0.45, 0.55])[ctype] * li) * engaged
    opened = rng.random(m) < p_open
    r = rng.random(m)
    delay = np.where(r < 0.4, rng.exponential(20 * 60, m),
                     np.where(r < 0.75, rng.uniform(HOUR, 10 * HOUR, m), rng.uniform(DAY, 5 * DAY, m)))
    t_open = sent + 30 + delay
    o = np.flatnonzero(opened)
    extra = np.minimum(rng.poisson(0.2 + 1.2 * li[o]), 4)
    xo, _ = ragged(extra)
    o_idx = np.concatenate([o, o[xo]])
    o_t = np.concatenate([t_open[o], t_open[o[xo]] + rng.uniform(0.5 * HOUR, 3 * DAY, len(xo))])
    act.add(CODE["Email Opened"], lead[o_idx], o_t, props.take(pa.array(o_idx)), CTX_EMAIL)

    p_click = (0.06 + 0.45 * li[o]) * np.where(ctype[o] == 0, 0.7, 1.0)
    c = o[rng.random(len(o)) < p_click]
    clicks = 1 + np.minimum(rng.poisson(0.3 * intent[lead[c]]), 2)
    cc, ck = ragged(clicks)
    c_idx = c[cc]
    link = rng.integers(0, 3, len(c_idx))
    link_path = np.array(["/pricing", "/case-studies/northwind-saas", "/blog/what-is-lead-scoring"])
    c_props = obj(len(c_idx), base_take(base, c_idx) + [
        ("link_id", join("lnk-", num_text(link + 1))), ("link_url", join(pools.SITE, pa.array(link_path[link])))])
    act.add(CODE["Email Link Clicked"], lead[c_idx], t_open[c_idx] + rng.exponential(180, len(c_idx)) + ck * HOUR,
            c_props, CTX_EMAIL)

    p_reply = np.array([0.02, 0.005, 0.08])[ctype[o]] + np.array([0.18, 0.03, 0.5])[ctype[o]] * li[o]
    rp = o[rng.random(len(o)) < p_reply]
    replies = 1 + (rng.random(len(rp)) < 0.25 * intent[lead[rp]]).astype(np.int64)
    rr, rk = ragged(replies)
    r_idx = rp[rr]
    act.add(CODE["Email Replied"], lead[r_idx],
            t_open[r_idx] + rng.uniform(600, 30 * HOUR, len(r_idx)) + rk * rng.uniform(DAY, 4 * DAY, len(r_idx)),
            props.take(pa.array(r_idx)), CTX_EMAIL)


def base_take(fields, idx: np.ndarray):
    sel = pa.array(idx)
    return [(k, v.take(sel) if isinstance(v, pa.Array) else v) for k, v in fields]


def _content(rng, pop: Population, tl: Timeline, act: Activity) -> None:
    intent = pop.intent
    dl, _ = ragged(_count(rng, 0.1 + 1.6 * intent ** 1.3, 10))
    rt = rng.integers(0, len(pools.RESOURCE_TYPES), len(dl))
    act.add(CODE["Resource Downloaded"], dl, tl.times(rng, dl),
            obj(len(dl), [("resource_type", _take(pools.RESOURCE_TYPES, rt)),
                          ("resource_id", join("res-", num_text(rt * 10 + rng.integers(0, 5, len(dl)))))]))
    sl, _ = ragged(_count(rng, 0.15 + 1.4 * intent, 12))
    w = np.array(pools.SOCIAL_NETWORK_WEIGHTS, float)
    act.add(CODE["Social Engaged"], sl, tl.times(rng, sl),
            obj(len(sl), [("network", _take(pools.SOCIAL_NETWORKS, rng.choice(len(w), len(sl), p=w / w.sum()))),
                          ("action", _take(pools.SOCIAL_ACTIONS, rng.integers(0, len(pools.SOCIAL_ACTIONS), len(sl))))]),
            CTX_SERVER)
    fl, _ = ragged(_count(rng, 0.1 + 0.9 * intent, 8))
    act.add(CODE["Form Submitted"], fl, tl.times(rng, fl),
            obj(len(fl), [("form_id", _take(pools.FORM_IDS, rng.integers(1, len(pools.FORM_IDS), len(fl)))),
                          ("page", "/pricing")]))


def _videos(rng, pop: Population, tl: Timeline, act: Activity) -> None:
    intent = pop.intent
    lead, k = ragged(_count(rng, 0.25 + 4.2 * intent ** 1.3, 20))
    m = len(lead)
    if not m:
        return
    li = intent[lead]
    stage = pick(rng, _STAGE_LOW[None, :] * (1 - li[:, None]) + _STAGE_HIGH[None, :] * li[:, None])
    vid = _VID_ORDER[_VID_OFF[stage] + (rng.random(m) * _VID_COUNT[stage]).astype(np.int64)]
    L = _VID_LEN[vid]
    t0 = tl.times(rng, lead)
    rate = rng.choice(np.array([1.0, 1.25, 1.5, 2.0]), m, p=[0.88, 0.04, 0.05, 0.03])
    complete = rng.random(m) < 0.06 + 0.5 * li ** 1.2
    F = np.where(complete, L, np.floor(rng.beta(0.7 + 2.5 * li, 1.6) * L)).astype(np.int64)
    skip = (rng.random(m) < 0.12) & (F >= 40)
    replay = (rng.random(m) < 0.05 + 0.35 * li) & (F >= 30)
    s = np.where(skip, np.floor(F * rng.uniform(0.15, 0.5, m)), F).astype(np.int64)
    d = np.where(skip, s + np.floor((F - s) * rng.uniform(0.2, 0.7, m)), F).astype(np.int64)
    a = np.where(replay, np.floor(s * rng.uniform(0.4, 1.0, m)), s).astype(np.int64)
    b = np.where(replay, np.floor(a * rng.uniform(0.05, 0.8, m)), a).astype(np.int64)
    # Segments played: [0, a], then after a seek back [b, s], then after a seek forward [d, F].
    has_pause = (rng.random(m) < 0.15 + 0.15 * li) & (a >= 20)
    p_pos = np.where(has_pause, np.floor(a * rng.uniform(0.2, 0.9, m)), 0).astype(np.int64)
    p_len = np.where(has_pause, rng.uniform(3, 180, m), 0.0)
    T1 = t0 + 0.5
    E1 = T1 + a / rate + p_len
    T2 = np.where(replay, E1 + 1.5, E1)
    E2 = np.where(replay, T2 + (s - b) / rate, E1)
    T3 = np.where(skip, E2 + 1.5, E2)
    E3 = np.where(skip, T3 + (F - d) / rate, E2)

    sid = _ids("vs-", pop, lead, k)
    ids = [v.id for v in VIDEOS]
    asset = _take(ids, vid)
    total = L
    webp = dict(ctx=CTX_WEB, ids=ID_USER)
    all_ = np.arange(m)

    def props(rows, extra):
        sel = pa.array(rows)
        return obj(len(rows), [("session_id", sid.take(sel)), ("content_asset_id", asset.take(sel))] + extra
                   + [("total_length", total[rows])])

    act.add(CODE["Video Playback Started"], lead, t0, props(all_, [
        ("content_asset_ids", Raw(join('["', asset, '"]'))), ("position", 0), ("video_player", "html5"),
        ("sound", rng.integers(0, 11, m) * 10), ("full_screen", rng.random(m) < 0.2), ("playback_rate", rate)]), **webp)
    act.add(CODE["Video Content Started"], lead, t0 + 0.2, props(all_, [
        ("asset_id", asset), ("title", _take([v.title for v in VIDEOS], vid)), ("position", 0)]), **webp)

    # Heartbeats every 10 s of content played, per segment.
    for seg_mask, p0, p1, T, paused in ((np.ones(m, bool), np.zeros(m, np.int64), a, T1, True),
                                        (replay, b, s, T2, False), (skip, d, F, T3, False)):
        beats = np.where(seg_mask, (p1 - p0) // 10, 0)
        sess, j = ragged(beats)
        pos = p0[sess] + 10 * (j + 1)
        t = T[sess] + (pos - p0[sess]) / rate[sess]
        if paused:
            t = t + np.where(has_pause[sess] & (pos > p_pos[sess]), p_len[sess], 0.0)
        act.add(CODE["Video Content Playing"], lead[sess], t, props(sess, [
            ("asset_id", asset.take(pa.array(sess))), ("position", pos), ("playback_rate", rate[sess])]), **webp)

    pz = np.flatnonzero(has_pause)
    t_pause = T1[pz] + p_pos[pz] / rate[pz]
    act.add(CODE["Video Playback Paused"], lead[pz], t_pause, props(pz, [("position", p_pos[pz])]), **webp)
    act.add(CODE["Video Playback Resumed"], lead[pz], t_pause + p_len[pz], props(pz, [("position", p_pos[pz])]), **webp)
    for mask, frm, to, at in ((replay, a, b, E1), (skip, s, d, E2)):
        q = np.flatnonzero(mask)
        act.add(CODE["Video Playback Seek Started"], lead[q], at[q],
                props(q, [("position", frm[q]), ("seek_position", to[q])]), **webp)
        act.add(CODE["Video Playback Seek Completed"], lead[q], at[q] + 1, props(q, [("position", to[q])]), **webp)

    done = F >= L
    q = np.flatnonzero(done)
    act.add(CODE["Video Content Completed"], lead[q], E3[q],
            props(q, [("asset_id", asset.take(pa.array(q))), ("position", L[q])]), **webp)
    act.add(CODE["Video Playback Completed"], lead[q], E3[q] + 0.1, props(q, [("position", L[q])]), **webp)
    q = np.flatnonzero(~done)
    act.add(CODE["Video Playback Exited"], lead[q], E3[q] + 0.5, props(q, [("position", F[q])]), **webp)

    # CTA responses inside the video, in its last played stretch (where the end card and overlays are).
    p_cta = np.clip((0.03 + 0.3 * li ** 1.2) * _CTA_STAGE_MULT[stage], 0, 0.9) * (F >= 10)
    q = np.flatnonzero(rng.random(m) < p_cta)
    lq = li[q]
    cta = pick(rng, np.stack([0.65 - 0.35 * lq, 0.25 + 0.05 * lq, 0.10 + 0.30 * lq], axis=1))
    last0 = np.where(skip, d, np.where(replay, b, 0))[q]
    lastT = np.where(skip, T3, np.where(replay, T2, T1))[q]
    pos = last0 + np.floor(rng.random(len(q)) * (F[q] - last0 + 1)).astype(np.int64)
    pos = np.minimum(pos, F[q])
    t = lastT + (pos - last0) / rate[q] + np.where(~skip[q] & ~replay[q] & has_pause[q] & (pos > p_pos[q]), p_len[q], 0)
    act.add(CODE["CTA Clicked"], lead[q], t + 0.3, props(q, [
        ("cta_type", _take(("button", "form", "meeting"), cta)), ("cta_id", join("cta-", asset.take(pa.array(q)))),
        ("position", pos)]), **webp)


def _opportunities(rng, pop: Population, tl: Timeline, act: Activity, t_demo, t_meet, t_trial) -> None:
    intent, n = pop.intent, pop.n
    trigger = np.fmin(np.fmin(t_demo, t_meet), t_trial + 14 * DAY)
    has = ~np.isnan(trigger) & (trigger <= tl.end)
    opp = has & (rng.random(n) < 0.35 + 0.6 * intent)
    created = trigger + rng.uniform(2, 21, n) * DAY
    close = created + rng.uniform(10, 90, n) * DAY
    won = rng.random(n) < 1 / (1 + np.exp(-9 * (intent - 0.45)))
    closed = opp & (close <= tl.end)
    outcome = np.where(closed, np.where(won, 2, 3), np.where(opp, 1, 0))
    act.outcome = outcome
    act.outcome_t = np.where(closed, close, np.nan)
    amount = np.round(np.clip(4000 + pop.employees[pop.account] * 15, 4000, 250000) * rng.uniform(0.7, 1.3, n), -2)
    for code, value in ((2, "Opportunity Won"), (3, "Opportunity Lost")):
        q = np.flatnonzero(outcome == code)
        close_date = np.datetime_as_string((close[q] * 1000).astype("datetime64[ms]"), unit="D")
        fields = [("opportunity_id", join("opp-", pop.lead_num.take(pa.array(q)))), ("amount", amount[q]),
                  ("currency", "USD"), ("close_date", pa.array(close_date))]
        if code == 3:
            fields.append(("reason", _take(pools.LOST_REASONS, rng.integers(0, len(pools.LOST_REASONS), len(q)))))
        act.add(CODE[value], q, close[q], obj(len(q), fields), CTX_SERVER)
