"""The junk checks behind `is:` conditions (disposable and role e-mail addresses, invalid syntax,
gibberish or placeholder names), as SQL every dialect runs. Disposable domains come from the
maintained `disposable-email-domains` list, loaded into the table ref_disposable_domains."""
from __future__ import annotations

from leadscore.store.dialect import Dialect, quote_literal

# Deliberately simple patterns: they must mean the same in RE2 (DuckDB), POSIX ERE (PostgreSQL)
# and Java (Spark), so no escapes, lookarounds or classes beyond [...].
EMAIL_SYNTAX = "^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*[.][A-Za-z]{2,}$"
PLACEHOLDER = "^(test|testing|asdf|qwerty|xxx+|n/?a|none|null|abc|aaa+|foo|bar|sample|fake|dummy|unknown|anonymous|[a-z])$"
KEYBOARD = "(asdf|qwer|zxcv|hjkl|sdfg|dfgh|uiop|jkl;)"
CONSONANT_RUN = "[bcdfghjklmnpqrstvwxz]{6,}"


def _in_list(expr: str, values) -> str:
    return f"{expr} IN ({', '.join(quote_literal(v) for v in values)})"


def junk_sql(dialect: Dialect, check: str, text: str, role_prefixes: list[str], extra_domains: list[str]) -> str:
    low = f"lower(trim({text}))"
    if check == "invalid_email":
        return f"NOT {dialect.regex(f'trim({text})', EMAIL_SYNTAX)}"
    if check == "disposable_email":
        domain = dialect.split_part(low, "@", 2)
        extra = f" OR {_in_list(domain, [d.lower() for d in extra_domains])}" if extra_domains else ""
        return f"({domain} IN (SELECT domain FROM ref_disposable_domains){extra})"
    if check == "role_email":
        return _in_list(dialect.split_part(low, "@", 1), [p.lower() for p in role_prefixes])
    if check == "gibberish":
        return (f"({dialect.regex(low, PLACEHOLDER)} OR {dialect.regex(low, KEYBOARD)} "
                f"OR {dialect.regex(low, CONSONANT_RUN)})")
    raise ValueError(f"unknown junk check {check!r}")
