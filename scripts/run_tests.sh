#!/usr/bin/env bash
# Runs the whole suite. PostgreSQL: $LEADSCORE_TEST_PG (default the server on 127.0.0.1:5432, db test);
# if none answers, a throwaway server is started from the Debian binaries for this run.
set -euo pipefail
cd "$(dirname "$0")/.."
export LEADSCORE_TEST_PG="${LEADSCORE_TEST_PG:-postgresql://postgres@127.0.0.1:5432/test}"
cleanup=""
if ! .venv/bin/python scripts/pg_ping.py "$LEADSCORE_TEST_PG"; then
  echo "no PostgreSQL at $LEADSCORE_TEST_PG: starting a throwaway server"
  export LEADSCORE_TEST_PG="$(bash scripts/throwaway_pg.sh start)"
  cleanup="bash scripts/throwaway_pg.sh stop"
fi
trap '$cleanup' EXIT
# The full Spark-vs-DuckDB comparison of the default model is opt-in (-m spark_full): see pyproject markers.
if [ $# -eq 0 ]; then set -- -m "not spark_full"; fi
.venv/bin/python -m pytest -n 2 -q "$@"
