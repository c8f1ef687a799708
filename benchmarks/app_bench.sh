#!/usr/bin/env bash
# Requests/s of the example app under PM2 cluster mode vs a single Node.js
# process, on the same lab host, port and firewall path.
#
#   flock /var/lock/stackops-molecule.lock molecule converge -s app
#   benchmarks/app_bench.sh [seconds] [connections]
#   flock /var/lock/stackops-molecule.lock molecule destroy -s app
#
# Uses the containers of the molecule scenario `app`: wrk (Debian package)
# runs on app-lb1 against app-app1:3000. First the PM2 cluster (one worker per
# CPU) is measured; then PM2's app is stopped and one `node server.js` of the
# same release (the standalone build's equivalent of `next start`) serves the
# same port; finally the PM2 app is started again. Every run is bounded by
# the duration; the whole script takes about 4 x (seconds + 5) s.
set -euo pipefail

SECONDS_PER_RUN=${1:-20}
CONNECTIONS=${2:-50}
APP=app-app1
CLIENT=app-lb1
BASE=/srv/webstack
PM2="runuser -u webstack -- env PM2_HOME=$BASE/.pm2 PATH=/usr/local/bin:/usr/bin:/bin pm2"

for c in "$APP" "$CLIENT"; do
  docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null | grep -q true \
    || { echo "container $c is not running: molecule converge -s app first" >&2; exit 1; }
done

in_app() { docker exec "$APP" bash -c "$1"; }
addr=$(docker exec "$APP" hostname -I | awk '{print $1}')
docker exec "$CLIENT" bash -c 'command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)'

run_wrk() {  # label path
  local out
  out=$(docker exec "$CLIENT" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --timeout 5s --latency \
        "http://$addr:3000$2")
  printf '%-28s %-12s %10s req/s   p50 %-9s p99 %-9s errors %s\n' "$1" "$2" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" \
    "$(awk '$1=="99%" {print $2}' <<<"$out")" \
    "$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | paste -sd';' - || true)"
}

workers=$(in_app "$PM2 jlist" | python3 -c 'import json,sys; t=sys.stdin.read(); print(sum(1 for p in json.loads(t[t.index("["):]) if p["name"]=="webstack"))')
echo "host: $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME"); app container: $(docker exec "$APP" bash -c '. /etc/os-release; echo $PRETTY_NAME'), node $(docker exec "$APP" node --version)"
echo "wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s from $CLIENT to $APP:3000"

for path in /api/health /; do run_wrk "PM2 cluster ($workers workers)" "$path"; done

restore() { in_app "$PM2 start webstack >/dev/null 2>&1; systemctl stop app-single 2>/dev/null || true"; }
trap restore EXIT
in_app "$PM2 stop webstack >/dev/null"
release=$(in_app "basename \$(readlink $BASE/current)")
in_app "systemd-run --unit=app-single --collect --uid=webstack --gid=webstack \
  -p WorkingDirectory=$BASE/current -p RuntimeMaxSec=600 \
  --setenv=PORT=3000 --setenv=HOSTNAME=$addr --setenv=NODE_ENV=production --setenv=RELEASE_ID=$release \
  /usr/bin/env PATH=/usr/local/bin:/usr/bin:/bin node --env-file=$BASE/shared/app.env $BASE/current/server.js >/dev/null"
for _ in $(seq 30); do
  docker exec "$CLIENT" curl -sf -o /dev/null "http://$addr:3000/api/health" && break
  sleep 1
done
for path in /api/health /; do run_wrk "single process (1)" "$path"; done
