# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_DB ?= demo.duckdb
DEMO_N  ?= 2000
PORT    ?= 8000
BENCH_ARGS ?=

.PHONY: env sysdeps demo test bench lock clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

env: $(STAMP)

# Debian packages the tests drive for real: headless Chromium, ffmpeg, PostgreSQL binaries, Java for Spark.
sysdeps:
	bash scripts/ensure_system_deps.sh

demo: env
	$(BIN)/leadscore --db $(DEMO_DB) demo run --leads $(DEMO_N) --port $(PORT)

test: env sysdeps
	bash scripts/run_tests.sh

# The scale benchmark (BENCH_ARGS, e.g. "--leads 1000000 --repeat 3"; see bench/scale_bench.py), then the others if collected.
bench: env
	$(BIN)/python -m bench.scale_bench $(BENCH_ARGS)
	test ! -f bench/run_all.py || $(BIN)/python -m bench.run_all

# Regenerate the lock file after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache demo.duckdb*
