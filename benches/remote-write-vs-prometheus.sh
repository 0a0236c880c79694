#!/usr/bin/env bash
# Sends the same agent-shaped remote write load (2000 series x 1 sample a request, 20k series,
# node_exporter-like) to Tripod and to Prometheus (--web.enable-remote-write-receiver), each
# pinned to CPU 0 with the load tool on CPU 1, and prints both rates. Loopback only.
# Needs: prometheus on PATH, taskset (util-linux), two CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin tripod --bin tripod-load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
load() { taskset -c 1 target/release/tripod-load remote-write --url "$1" --series 20000 --duration 15s --concurrency 4 --prepared 6000 "${@:2}" 2>/dev/null; }

taskset -c 0 target/release/tripod --ephemeral --log.level warn --listen.prometheus 127.0.0.1:19090 \
  --listen.loki off --listen.tempo off --listen.otlp-http off --listen.otlp-grpc off &
sleep 1
echo -n "tripod, remote write 1.0:  "; load http://127.0.0.1:19090/api/v1/write
echo -n "tripod, remote write 2.0:  "; load http://127.0.0.1:19090/api/v1/write --protocol v2
kill %1; wait %1 || true

printf 'global:\n  scrape_interval: 15s\n' > "$work/prometheus.yml"
taskset -c 0 prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address=127.0.0.1:19091 --web.enable-remote-write-receiver --log.level=warn &
sleep 3
echo -n "prometheus, remote write 1.0: "; load http://127.0.0.1:19091/api/v1/write
