"""Exit 0 if the PostgreSQL server named by argv[1] answers, 1 otherwise."""
import sys

import psycopg

try:
    with psycopg.connect(sys.argv[1], connect_timeout=3) as conn:
        conn.execute("select 1")
except Exception as exc:  # any failure means "not usable"
    print(f"PostgreSQL not reachable: {exc}", file=sys.stderr)
    sys.exit(1)
