#!/usr/bin/env bash
# Prints lakemesh's benchmark figures side by side with the peers a user
# would pick instead, measured in the same run (medians of
# LAKEMESH_BENCH_RUNS runs, default 3). Needs consul and minio (.ci/deps
# builds them) and, for federation, rclone.
#   bench/run.sh              # the foundation's figures: a region against direct MinIO GETs
#   bench/run.sh federation   # issue 3: bytes crossed, fill time, line rate, TTFB; rclone through the same line
#   go test ./cachenode -run XXX -bench . -benchmem   # the page store's own
# Federation sizes: LAKEMESH_BENCH_FED_MIB (per file, default 64),
# LAKEMESH_BENCH_FILL_GIB (dataset, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
test=TestMeshBenchmarks
case "${1:-}" in
  "") ;;
  federation) test=TestFederationBenchmarks ;;
  *) echo "bench/run.sh: unknown benchmark set \"$1\"; use no argument or federation" >&2; exit 2 ;;
esac
.ci/deps --bench >/dev/null
export PATH="${LAKEMESH_TOOLS:-$HOME/.cache/lakemesh/tools}/bin:$PATH"
LAKEMESH_BENCH=1 go test ./test -run "^$test\$" -count=1 -v -timeout 90m 2>&1 | grep -v '^=== RUN\|^--- \|^PASS\|^ok'
