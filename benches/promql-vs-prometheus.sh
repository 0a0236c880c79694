#!/usr/bin/env bash
# Range query latency of `sum by (mode) (rate(node_cpu_seconds_total[5m]))` over 10 000 series
# (125 hosts x 10 CPUs x 8 modes) x 6 h at 15 s, step 15 s, in Tripod and in Prometheus on the
# same data in the same run. Each server runs alone (one after the other, not pinned), is
# backfilled by remote write in time order with the same generated data (same --end), and the
# query is timed warm: 3 untimed runs, then 20 timed ones, one at a time. Prints both p50s and
# their ratio. Loopback only. Needs: prometheus on PATH (started with a config that scrapes
# nothing), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/setup.sh

tripod_port=19290
prometheus_port=19291
query='sum by (mode) (rate(node_cpu_seconds_total[5m]))'
end=$(($(date +%s) / 60 * 60))
start=$((end - 6 * 3600))
# 125 x 10 x 8 series; 1441 samples each (both ends of the 6 h), so every step but the first
# has a rate: 8 series x 1440 points.
expected_series=10000
expected_points=$((8 * 1440))

wait_ready() {
  for _ in $(seq 150); do
    if curl -fs -o /dev/null "$1/-/ready"; then return 0; fi
    sleep 0.2
  done
  echo "error: $1 did not become ready" >&2
  return 1
}

# Backfills the server at base URL $2, checks it holds every series, times the query and checks
# the size of the answer. Sets p50 (ms).
measure() {
  local name=$1 base=$2 out count series points
  "$bin/tripod-load" backfill --url "$base/api/v1/write" --end "$end" | sed "s/^/$name: /"
  # Background work the writes started (Prometheus compacts its head into blocks) settles first.
  sleep 5
  count=$(curl -fsS "$base/api/v1/query" --data-urlencode 'query=count(node_cpu_seconds_total)' \
    --data-urlencode "time=$end" | sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p')
  if [ "$count" != "$expected_series" ]; then
    echo "error: $name holds ${count:-no} node_cpu_seconds_total series at the end, not $expected_series" >&2
    exit 1
  fi
  out=$("$bin/tripod-load" query --url "$base" --query "$query" --start "$start" --end "$end" --step 15s \
    --runs 20 --warmup 3)
  echo "$name: $out"
  p50=$(sed -n 's/.* p50 \([0-9.]*\) ms.*/\1/p' <<<"$out")
  series=$(sed -n 's/.*; \([0-9]*\) series, \([0-9]*\) points$/\1/p' <<<"$out")
  points=$(sed -n 's/.*; \([0-9]*\) series, \([0-9]*\) points$/\2/p' <<<"$out")
  if [ "$series" != 8 ] || [ "$points" != "$expected_points" ]; then
    echo "error: $name answered $series series and $points points, not 8 and $expected_points" >&2
    exit 1
  fi
}

echo "data: $expected_series series x 6 h at 15 s ending at $end; query: $query, step 15s"

"$bin/tripod" --ephemeral --log.level warn --listen.prometheus "127.0.0.1:$tripod_port" \
  --listen.loki off --listen.tempo off --listen.otlp-http off --listen.otlp-grpc off &
server=$!
wait_ready "http://127.0.0.1:$tripod_port"
measure tripod "http://127.0.0.1:$tripod_port"
tripod_p50=$p50
kill "$server"
wait "$server" || true
server=""

printf 'global:\n  scrape_interval: 15s\n' >"$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prometheus_port" --web.enable-remote-write-receiver --log.level=warn &
server=$!
wait_ready "http://127.0.0.1:$prometheus_port"
measure prometheus "http://127.0.0.1:$prometheus_port"
prometheus_p50=$p50

echo "p50: tripod $tripod_p50 ms, prometheus $prometheus_p50 ms;" \
  "prometheus / tripod = $(awk -v t="$tripod_p50" -v p="$prometheus_p50" 'BEGIN { printf "%.1f", p / t }')"
