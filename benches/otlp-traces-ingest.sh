#!/usr/bin/env bash
# OTLP trace ingest end to end: Tripod (release build, data on disk, WAL fsync by interval)
# receives `tripod-load traces` traffic (the load tool's realistic shop spans, 50 traces a
# request) as fast as it accepts it, and the figure is spans stored per second of the server's
# CPU time (user and system, every thread: transport, decoding, the store, the WAL, and unless
# TRIPOD_BENCH_CUTS=0 the block cuts and WAL checkpoints), which is what one core of ingestion
# handles. The load tool runs on the same machine; its own CPU time is not counted. Loopback
# only.
#
# Usage: benches/otlp-traces-ingest.sh [grpc|http-protobuf|http-json] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
protocol=${1:-grpc}
seconds=${2:-20}
. benches/setup.sh
grpc_port=19317
http_port=19318
tempo_port=19320
case "$protocol" in
  grpc) url="http://127.0.0.1:$grpc_port" ;;
  http-protobuf | http-json) url="http://127.0.0.1:$http_port/v1/traces" ;;
  *) echo "error: unknown protocol $protocol (grpc, http-protobuf or http-json)" >&2; exit 2 ;;
esac

# Block cuts run while the load runs, with the default head size (a cut every 512 MiB of head
# records, so the blocks are written once, past the size below which compaction merges them),
# maintenance every second and a head cut once it is 10 seconds old so that the last spans are
# cut within the run; the figure waits for that cut and for compaction to settle (the block
# count unchanged for ten seconds, ten maintenance passes): every span is paid for through to
# the block it stays in, WAL checkpoints included. TRIPOD_BENCH_CUTS=0 measures the write path
# alone instead: the defaults (the first maintenance pass a minute in, after the load), up to
# the last acknowledgement.
cuts=${TRIPOD_BENCH_CUTS:-1}
if [ "$cuts" = 1 ]; then
  cat >"$work/tripod.yaml" <<'YAML'
metrics:
  maintenance_interval: 1s
traces:
  max_head_age: 10s
YAML
else
  : >"$work/tripod.yaml"
fi
"$bin/tripod" --config "$work/tripod.yaml" --data-dir "$work/data" --log.level warn --listen.prometheus off --listen.loki off \
  --listen.tempo "127.0.0.1:$tempo_port" --listen.otlp-grpc "127.0.0.1:$grpc_port" \
  --listen.otlp-http "127.0.0.1:$http_port" &
server=$!
for _ in $(seq 150); do
  if curl -fs -o /dev/null "http://127.0.0.1:$tempo_port/ready"; then break; fi
  sleep 0.2
done

ticks=$(getconf CLK_TCK)
# The server's CPU time so far, in clock ticks (utime + stime of every thread).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }

gauge() {
  curl -fs "http://127.0.0.1:$tempo_port/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}
# Waits until every stored span is in a block and compaction has nothing left to do (the block
# count unchanged for ten seconds).
settle() {
  local last="" unchanged=0 blocks
  for _ in $(seq 3000); do
    blocks=$(gauge tripod_traces_blocks)
    if [ "$(gauge tripod_traces_head_spans)" = "0" ] && [ "$blocks" = "$last" ]; then
      unchanged=$((unchanged + 1))
    else
      unchanged=0
    fi
    last=$blocks
    if [ "$unchanged" -ge 100 ]; then return 0; fi
    sleep 0.1
  done
  echo "error: cuts and compaction did not settle within five minutes of the load's end" >&2
  exit 1
}

# Requests are prepared (encoded) before the load tool's clock starts; the server idles then.
prepared=$((seconds * 300))
if [ "$cuts" = 1 ]; then
  # A warm-up of the same length with other traces, cut and settled before the measure, not
  # counted: the figure is the server's steady state (its memory in use and reused), not its
  # first minute.
  "$bin/tripod-load" traces --url "$url" --protocol "$protocol" --duration "${seconds}s" \
    --prepared "$prepared" --concurrency 4 --seed 2 >/dev/null 2>&1
  settle
fi
before=$(cpu_ticks)
started=$(date +%s.%N)
out=$("$bin/tripod-load" traces --url "$url" --protocol "$protocol" --duration "${seconds}s" \
  --prepared "$prepared" --concurrency 4 2>&1)
ended=$(date +%s.%N)
if [ "$cuts" = 1 ]; then settle; fi
after=$(cpu_ticks)
if [ "$cuts" = 1 ]; then echo "blocks at the end: $(gauge tripod_traces_blocks)"; fi
echo "$out"
spans=$(sed -n 's/^traces: \([0-9]*\) spans .*/\1/p' <<<"$out" | tail -1)
if [ -z "$spans" ] || [ "$spans" -eq 0 ]; then
  echo "error: the load tool reported no accepted spans" >&2
  exit 1
fi
what="write path alone"
if [ "$cuts" = 1 ]; then what="every span cut into a block"; fi
awk -v what="$what" -v spans="$spans" -v cpu=$((after - before)) -v ticks="$ticks" -v wall="$(echo "$ended - $started" | bc)" 'BEGIN {
  seconds = cpu / ticks
  printf "%s spans stored; server CPU %.2f s over %.1f s of load; %.0f spans per CPU-second of the server (%s)\n",
    spans, seconds, wall, spans / seconds, what
}'
