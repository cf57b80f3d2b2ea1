#!/usr/bin/env bash
# start: initdb + pg_ctl a private server on port 55432 under /tmp, print its URL. stop: shut it down.
set -euo pipefail
DIR=/tmp/leadscore-pg; PORT=55432
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
RUNAS=(); [ "$(id -u)" = 0 ] && RUNAS=(runuser -u postgres --)
case "$1" in
  start)
    rm -rf "$DIR"; mkdir -p "$DIR"; [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    "${RUNAS[@]}" "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
    "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" -l "$DIR/log" -w start >/dev/null
    "$BIN/../bin/psql" -h 127.0.0.1 -p $PORT -U postgres -c "create database test" >/dev/null 2>&1 || true
    echo "postgresql://postgres@127.0.0.1:$PORT/test";;
  stop) "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true;;
esac
