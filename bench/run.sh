#!/usr/bin/env bash
# Prints lakemesh's benchmark figures side by side with direct GETs from the
# same MinIO, measured in the same run (medians of LAKEMESH_BENCH_RUNS runs,
# default 3). Needs consul and minio (.ci/deps builds them).
#   bench/run.sh              # all figures
#   go test ./cachenode -run XXX -bench . -benchmem   # the page store's own
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/deps >/dev/null
export PATH="${LAKEMESH_TOOLS:-$HOME/.cache/lakemesh/tools}/bin:$PATH"
LAKEMESH_BENCH=1 go test ./test -run TestMeshBenchmarks -count=1 -v -timeout 90m 2>&1 | grep -v '^=== RUN\|^--- \|^PASS\|^ok' 
