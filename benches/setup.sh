# Sourced by the bench scripts, from the repository's root: builds the release binaries
# (`$bin`), makes a work directory (`$work`, under TRIPOD_BENCH_DIR when set), and on exit
# stops the server whose PID is in `$server` and removes the work directory.
cargo build --release --quiet --bin tripod --bin tripod-load
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d "${TRIPOD_BENCH_DIR:-${TMPDIR:-/tmp}}/tripod-bench.XXXXXX")
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
