"""Accounts and personas of one chunk of the demo population, drawn column-wise with numpy.

Every lead has a hidden intent (0..1). Intent is partly the account's (a company that needs the
product sends several interested people) and partly the person's; it shifts the persona towards a
better fit (senior titles, target industries, sold markets, real e-mail addresses) with noise, and
later drives activity and conversion (``activity.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.demo import pools
from leadscore.demo.jsontext import Raw, obj

JUNK_KINDS = ("none", "disposable", "role", "gibberish", "invalid", "freemail")
_HEX = np.array([b"%02x" % i for i in range(256)], dtype="S2")
_LOCALES = {"US": "en-US", "GB": "en-GB", "DE": "de-DE", "FR": "fr-FR", "CA": "en-CA", "AU": "en-AU",
            "NL": "nl-NL", "BR": "pt-BR", "MX": "es-MX", "IN": "en-IN"}


def pick(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (rows, k) weight matrix."""
    cw = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cw[:, -1]
    return np.minimum((cw < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts per owner: (owner of each item, index of the item within its owner)."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - np.repeat(starts, counts)


def join(*parts) -> pa.Array:
    out = pc.binary_join_element_wise(*parts, "")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def strs(values) -> pa.Array:
    return pa.array(list(values), pa.string())


def num_text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def uuid_text(rng: np.random.Generator, n: int) -> pa.Array:
    """Random version-4 style UUID strings (what analytics.js uses for anonymousId)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = pa.array(np.ascontiguousarray(_HEX[raw]).view("S32").ravel().astype(str))
    cut = [pc.utf8_slice_codeunits(hexed, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return join(cut[0], "-", cut[1], "-", cut[2], "-", cut[3], "-", cut[4])


@dataclass
class Population:
    """One chunk of leads (index i = lead ``first + i``), column-wise."""
    first: int
    n: int
    intent: np.ndarray
    account: np.ndarray            # account index within the chunk, per lead
    account_first: np.ndarray      # first lead (global index) of each account → its id
    seniority: np.ndarray
    country_in_market: np.ndarray
    junk: np.ndarray               # index into JUNK_KINDS
    employees: np.ndarray          # per account
    ie11: np.ndarray
    user_id: pa.Array
    anonymous_id: pa.Array
    account_id: pa.Array           # per lead
    identify_traits: pa.Array      # JSON text per lead
    group_traits: pa.Array         # JSON text per lead (its account's traits)
    ctx_web: pa.Array
    ctx_email: pa.Array
    ctx_server: pa.Array
    lead_num: pa.Array             # the lead's number as text (for ids)


def draw_population(rng: np.random.Generator, first: int, n: int) -> Population:
    # Accounts: several leads per company (1..12, about 2.6 on average), consecutive lead numbers.
    sizes = np.minimum(rng.geometric(0.38, size=n), 12)
    cum = np.cumsum(sizes)
    n_acc = int(np.searchsorted(cum, n) + 1)
    sizes = sizes[:n_acc].copy()
    sizes[-1] -= int(cum[n_acc - 1] - n)
    account = np.repeat(np.arange(n_acc), sizes)
    account_first = first + np.cumsum(sizes) - sizes

    need = rng.beta(1.0, 2.3, size=n_acc)                   # how much the company needs the product
    own = rng.beta(1.0, 2.2, size=n)
    intent = np.clip(0.55 * need[account] + 0.45 * own + rng.normal(0, 0.04, size=n), 0.0, 1.0)

    # Account firmographics follow the account's need.
    country_base = np.array([c[1] for c in pools.COUNTRIES], dtype=float)
    out_market = np.array([c[0] not in pools.SOLD_MARKETS for c in pools.COUNTRIES])
    cw = country_base[None, :] * np.where(out_market[None, :], 0.2 + 1.3 * (1 - need[:, None]) ** 2, 1.0)
    acc_country = pick(rng, cw)
    ind_w = np.array(pools.INDUSTRY_BASE, float)[None, :] * np.exp(
        np.array(pools.INDUSTRY_SLOPE)[None, :] * (need[:, None] - 0.3) * 2)
    acc_industry = pick(rng, ind_w)
    employees = np.maximum(1, (10 ** np.clip(rng.normal(1.5 + 1.7 * need, 0.65), 0, 5.4)).astype(np.int64))
    head = rng.integers(0, len(pools.COMPANY_HEADS), size=n_acc)
    tail = rng.integers(0, len(pools.COMPANY_TAILS), size=n_acc)

    heads, tails = strs(pools.COMPANY_HEADS), strs(pools.COMPANY_TAILS)
    suffixes = strs(c[3] for c in pools.COUNTRIES)
    tlds = strs(c[2] for c in pools.COUNTRIES)
    codes = strs(c[0] for c in pools.COUNTRIES)
    acc_head, acc_tail = heads.take(head), tails.take(tail)
    acc_name = join(acc_head, " ", acc_tail, " ", suffixes.take(acc_country))
    acc_domain = join(pc.replace_substring(pc.utf8_lower(join(acc_head, acc_tail)), " ", ""), ".", tlds.take(acc_country))
    acc_industry_s = strs(pools.INDUSTRIES).take(acc_industry)
    acc_id = join("acct-", num_text(account_first))

    # Personas.
    sen_w = np.array(pools.SENIORITY_BASE, float)[None, :] * np.exp(
        np.array(pools.SENIORITY_SLOPE)[None, :] * (intent[:, None] - 0.3))
    seniority = pick(rng, sen_w)
    title_flat = [t for s in pools.SENIORITIES for t in pools.TITLES[s]]
    title_count = np.array([len(pools.TITLES[s]) for s in pools.SENIORITIES])
    title_off = np.cumsum(title_count) - title_count
    title = title_off[seniority] + (rng.random(n) * title_count[seniority]).astype(np.int64)

    moved = rng.random(n) < 0.05                              # works abroad / remote
    country = np.where(moved, rng.integers(0, len(pools.COUNTRIES), size=n), acc_country[account])
    country_in_market = ~out_market[country]

    jw = np.stack([
        np.full(n, 0.86 - 0.0),                                # a real corporate address
        0.015 + 0.06 * (1 - intent) ** 2,                      # disposable domain
        0.01 + 0.03 * (1 - intent),                            # role account (info@, sales@)
        0.01 + 0.05 * (1 - intent) ** 2,                       # gibberish / placeholder name
        0.008 + 0.02 * (1 - intent),                           # invalid syntax
        0.04 + 0.06 * (1 - intent),                            # personal free-mail
    ], axis=1)
    junk = pick(rng, jw)
    junk[seniority == 5] = np.where(rng.random(int((seniority == 5).sum())) < 0.5, 5, junk[seniority == 5])

    fn = strs(pools.FIRST_NAMES).take(rng.integers(0, len(pools.FIRST_NAMES), size=n))
    ln = strs(pools.LAST_NAMES).take(rng.integers(0, len(pools.LAST_NAMES), size=n))
    jn = rng.integers(0, len(pools.JUNK_NAMES), size=n)
    is_gib = pa.array(junk == 3)
    fn = pc.if_else(is_gib, strs(j[0] for j in pools.JUNK_NAMES).take(jn), fn)
    ln = pc.if_else(is_gib, strs(j[1] for j in pools.JUNK_NAMES).take(jn), ln)
    f_low, l_low = pc.utf8_lower(fn), pc.utf8_lower(ln)
    domain = acc_domain.take(account)
    digits = num_text(rng.integers(1, 99, size=n))
    pattern = rng.integers(0, 3, size=n)
    corporate_local = pc.choose(pa.array(pattern), join(f_low, ".", l_low),
                                join(pc.utf8_slice_codeunits(f_low, 0, 1), l_low), f_low)
    disposable = strs(pools.DISPOSABLE_DOMAINS).take(rng.integers(0, len(pools.DISPOSABLE_DOMAINS), size=n))
    roles = strs(pools.ROLE_LOCALS).take(rng.integers(0, len(pools.ROLE_LOCALS), size=n))
    freemail = strs(pools.FREEMAIL_DOMAINS).take(rng.integers(0, len(pools.FREEMAIL_DOMAINS), size=n))
    bad_domain = strs(["test.com", "asdf.com", "example.com", "aaa.com"]).take(rng.integers(0, 4, size=n))
    invalid = pc.choose(pa.array(rng.integers(0, 5, size=n)),
                        join(corporate_local, "@@", domain),                         # doubled @
                        join(corporate_local, ".", domain),                          # no @ at all
                        join(f_low, " ", l_low, "@", domain),                        # a space
                        join(corporate_local, "@", pc.utf8_slice_codeunits(domain, 0, 4)),  # no TLD
                        join(corporate_local, "@", domain, "."))                    # trailing dot
    email = pc.choose(pa.array(junk),
                      join(corporate_local, "@", domain),
                      join(f_low, l_low, digits, "@", disposable),
                      join(roles, "@", domain),
                      join(f_low, "@", bad_domain),
                      invalid,
                      join(f_low, ".", l_low, digits, "@", freemail))

    sen_s = strs(pools.SENIORITIES).take(seniority)
    title_s = strs(title_flat).take(title)
    country_s = codes.take(country)
    emp_lead = employees[account]
    identify_traits = obj(n, [
        ("email", email), ("first_name", fn), ("last_name", ln), ("name", join(fn, " ", ln)),
        ("title", title_s), ("seniority", sen_s),
        ("company", Raw(obj(n, [("name", acc_name.take(account)), ("employee_count", emp_lead),
                                ("industry", acc_industry_s.take(account))]))),
        ("address", Raw(obj(n, [("country", country_s)]))),
    ])
    group_traits = obj(n, [
        ("name", acc_name.take(account)), ("industry", acc_industry_s.take(account)),
        ("employees", emp_lead), ("employee_count", emp_lead),
        ("website", join("https://www.", domain)), ("country", codes.take(acc_country[account])),
    ])

    ua_w = np.array([u[1] for u in pools.USER_AGENTS], float)[None, :].repeat(n, axis=0)
    ua_w[:, pools.IE11_INDEX] *= 0.4 + 2.2 * (1 - intent)     # old corporate desktops, less interested
    ua = pick(rng, ua_w)
    ip = join(*[x for k in range(4) for x in ((num_text(rng.integers(11, 223, size=n)),) if k == 0 else
                                             (".", num_text(rng.integers(0, 256, size=n))))])
    locale = strs(_LOCALES.get(c[0], "en-US") for c in pools.COUNTRIES).take(country)
    ctx_web = obj(n, [("userAgent", strs(u[0] for u in pools.USER_AGENTS).take(ua)), ("ip", ip),
                      ("locale", locale), ("library", {"name": "analytics.js", "version": "next-1.70.0"})])
    ctx_email = obj(n, [("traits", Raw(obj(n, [("email", email)]))),
                        ("library", {"name": "esp-webhooks", "version": "1.0"})])
    ctx_server = obj(n, [("library", {"name": "analytics-python", "version": "2.4.0"})])

    lead_num = num_text(np.arange(first, first + n))
    user_id = join("lead-", pc.utf8_lpad(lead_num, 7, "0"))
    return Population(
        first=first, n=n, intent=intent, account=account, account_first=account_first,
        seniority=seniority, country_in_market=country_in_market, junk=junk, employees=employees,
        ie11=ua == pools.IE11_INDEX, user_id=user_id, anonymous_id=uuid_text(rng, n),
        account_id=acc_id.take(account), identify_traits=identify_traits, group_traits=group_traits,
        ctx_web=ctx_web, ctx_email=ctx_email, ctx_server=ctx_server, lead_num=lead_num,
    )
