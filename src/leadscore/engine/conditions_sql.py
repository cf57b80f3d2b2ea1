"""Model conditions → SQL boolean expressions. A missing value never satisfies a condition
(SQL NULL is folded to FALSE), so an unknown country is neither in nor out of your markets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from leadscore.engine.junk import junk_sql
from leadscore.model.conditions import Condition
from leadscore.model.schema import Junk, Where
from leadscore.store.dialect import Dialect, quote_literal


@dataclass
class Value:
    """How to read one field: its text and its numeric SQL expression."""

    text: str
    num: str


def _num_literal(v: float) -> str:
    return repr(float(v))


def _like_from_glob(glob: str) -> str:
    out = []
    for ch in glob:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_!":
            out.append("!" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _like_escape(text: str) -> str:
    return "".join("!" + c if c in "%_!" else c for c in text)


def _scalar_eq(v, value: Value) -> str:
    if isinstance(v, bool):
        return f"lower({value.text}) = {quote_literal('true' if v else 'false')}"
    if isinstance(v, (int, float)):
        return f"{value.num} = {_num_literal(v)}"
    return f"{value.text} = {quote_literal(v)}"


def condition_sql(dialect: Dialect, cond: Condition, value: Value, junk: Junk) -> str:
    parts: list[str] = []
    text = value.text
    ci = cond.ignore_case

    def t(expr: str) -> str:
        return f"lower({expr})" if ci else expr

    def lit(s: str) -> str:
        return quote_literal(s.lower() if ci else s)

    if cond.eq is not None:
        parts.append(_scalar_eq(cond.eq, value) if not (ci and isinstance(cond.eq, str)) else f"{t(text)} = {lit(cond.eq)}")
    if cond.ne is not None:
        parts.append(f"NOT ({_scalar_eq(cond.ne, value)})")
    for values, negate in ((cond.in_, False), (cond.not_in, True)):
        if values is None:
            continue
        strs = [v for v in values if isinstance(v, str)]
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        alts = []
        if strs:
            alts.append(f"{t(text)} IN ({', '.join(lit(s) for s in strs)})")
        if nums:
            alts.append(f"{value.num} IN ({', '.join(_num_literal(n) for n in nums)})")
        expr = "(" + " OR ".join(alts) + ")" if alts else "FALSE"
        parts.append(f"({text} IS NOT NULL AND NOT COALESCE({expr}, FALSE))" if negate else expr)
    if cond.contains is not None:
        parts.append(f"{t(text)} LIKE {lit('%' + _like_escape(cond.contains) + '%')} ESCAPE '!'")
    if cond.prefix is not None:
        parts.append(f"{t(text)} LIKE {lit(_like_escape(cond.prefix) + '%')} ESCAPE '!'")
    if cond.glob is not None:
        parts.append(f"{t(text)} LIKE {lit(_like_from_glob(cond.glob))} ESCAPE '!'")
    if cond.regex is not None:
        parts.append(dialect.regex(text, cond.regex, ignore_case=ci))
    for op, sym in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
        v = getattr(cond, op)
        if v is not None:
            parts.append(f"{value.num} {sym} {_num_literal(v)}")
    if cond.between is not None:
        lo, hi = cond.between
        parts.append(f"{value.num} BETWEEN {_num_literal(lo)} AND {_num_literal(hi)}")
    if cond.exists is not None:
        present = f"({text} IS NOT NULL AND {text} <> '')"
        parts.append(present if cond.exists else f"NOT {present}")
    if cond.is_ is not None:
        parts.append(junk_sql(dialect, cond.is_, text, junk.role_prefixes, junk.extra_disposable_domains))
    if cond.is_not is not None:
        inner = junk_sql(dialect, cond.is_not, text, junk.role_prefixes, junk.extra_disposable_domains)
        parts.append(f"({text} IS NOT NULL AND NOT COALESCE({inner}, FALSE))")
    return "COALESCE(" + " AND ".join(f"({p})" for p in parts) + ", FALSE)"


def where_sql(dialect: Dialect, where: Where | None, resolve: Callable[[str], Value], junk: Junk) -> str:
    if where is None:
        return "TRUE"
    parts = [condition_sql(dialect, cond, resolve(field), junk) for field, cond in where.fields().items()]
    if where.all:
        parts.extend(where_sql(dialect, w, resolve, junk) for w in where.all)
    if where.any:
        parts.append("(" + " OR ".join(where_sql(dialect, w, resolve, junk) for w in where.any) + ")")
    if where.not_ is not None:
        parts.append(f"NOT ({where_sql(dialect, where.not_, resolve, junk)})")
    return "(" + " AND ".join(parts) + ")" if parts else "TRUE"
