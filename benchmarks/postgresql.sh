#!/usr/bin/env bash
# pgbench throughput of the database tier: directly to PostgreSQL versus
# through PgBouncer, at 10 and 500 clients (plus 10 clients that open a new
# connection per transaction, like an application without a pool).
#
#   benchmarks/postgresql.sh                 # DURATION=20 SCALE=10
#   KEEP=1 benchmarks/postgresql.sh          # keep the containers afterwards
#
# Brings up the molecule scenario `postgresql` (db1 primary, db2 replica,
# app1 client; Debian 13 containers), runs pgbench on app1 against db1, prints
# a Markdown table, and destroys the scenario. Holds the shared molecule lock
# the whole time, so it never competes with a test run for the two cores.
# Every run is bounded: DURATION seconds, at most 500 clients.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCK=${STACKOPS_MOLECULE_LOCK:-/var/lock/stackops-molecule.lock}
if [ "${BENCH_LOCKED:-}" != 1 ]; then
  exec env BENCH_LOCKED=1 flock "$LOCK" "$0" "$@"
fi

DURATION=${DURATION:-20}
SCALE=${SCALE:-10}
THREADS=${THREADS:-4}
CLIENT=postgresql-app1
DSN="dbname=app user=app sslmode=require connect_timeout=10"

cd "$ROOT"
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG=$ROOT/ansible.cfg

cleanup() {
  if [ "${KEEP:-}" != 1 ]; then
    timeout 300 molecule destroy -s postgresql >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

echo "Bringing up the postgresql scenario ..." >&2
timeout 300 molecule create -s postgresql >/dev/null
timeout 300 molecule prepare -s postgresql >/dev/null
timeout 600 molecule converge -s postgresql >/dev/null

on_client() { docker exec "$CLIENT" bash -c "ulimit -n 8192; $*"; }

echo "Loading pgbench data (scale $SCALE) ..." >&2
on_client "pgbench -i -q -s $SCALE 'host=db1 port=5432 $DSN'" >/dev/null 2>&1

# One bounded pgbench run; prints "tps|failed|note".
measure() {
  local port=$1 clients=$2 extra=$3 out tps failed note
  out=$(on_client "timeout $((DURATION + 60)) pgbench -n $extra -c $clients -j $THREADS -T $DURATION \
        'host=db1 port=$port $DSN' 2>&1" || true)
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n 1)
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
  note=""
  if grep -q "too many clients\|remaining connection slots" <<<"$out"; then
    note="connections refused: max_connections is $(on_client "psql -XAtq -c 'SHOW max_connections' 'host=db1 port=5432 $DSN'")"
  elif [ -z "$tps" ]; then
    note="no result: $(grep -m1 -i error <<<"$out" || true)"
  fi
  printf '%s|%s|%s\n' "${tps:--}" "${failed:--}" "$note"
}

server=$(on_client "psql -XAtq -c 'SHOW server_version' 'host=db1 port=5432 $DSN'")
bouncer=$(docker exec postgresql-db1 pgbouncer --version | head -n 1)
echo
echo "Machine: $(nproc) vCPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME") host,"
echo "kernel $(uname -r); lab containers $(docker exec "$CLIENT" sh -c '. /etc/os-release; echo "$PRETTY_NAME"');"
echo "PostgreSQL $server, $bouncer (transaction pooling, 20 server connections per pool)."
echo "pgbench TPC-B-like, scale $SCALE, $DURATION s per run, $THREADS client threads, TLS on every connection."
echo
echo "| Clients | Connections | Direct to PostgreSQL (tps) | Through PgBouncer (tps) | Failed tx direct / PgBouncer | Notes |"
echo "|---|---|---|---|---|---|"
for row in "10|persistent|" "500|persistent|" "10|new per transaction|-C"; do
  IFS='|' read -r clients mode flag <<<"$row"
  IFS='|' read -r d_tps d_failed d_note <<<"$(measure 5432 "$clients" "$flag")"
  IFS='|' read -r b_tps b_failed b_note <<<"$(measure 6432 "$clients" "$flag")"
  notes=$(printf '%s' "${d_note:+direct: $d_note}${b_note:+ PgBouncer: $b_note}")
  echo "| $clients | $mode | $d_tps | $b_tps | $d_failed / $b_failed | $notes |"
done
echo
echo "Command: benchmarks/postgresql.sh (DURATION=$DURATION SCALE=$SCALE THREADS=$THREADS)"
