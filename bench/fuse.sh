#!/usr/bin/env bash
# Prints the FUSE mount's figures side by side with an rclone mount
# (--vfs-cache-mode full), an s3fs mount and a local directory holding the
# same files, all over the same MinIO, measured in the same run (medians of
# LAKEMESH_BENCH_RUNS runs, default 3): fio jobs for sequential, random and
# checkpoint I/O, 16 readers for small files, the daemon's RSS with 1,000
# files open and read. The warm figures are measured as the issue sets
# their goals, with the kernel's page cache kept after a warm-up read (a
# training job's second epoch), and again in the row after with the page
# cache dropped before each pass, so each file system serves from its own
# cache; small files once more with the page cache kept but past the
# metadata TTL. Cold figures always drop the page cache. Like bench/run.sh
# it runs a report test (TestMountBenchmarks) that starts Consul, MinIO
# behind counting proxies and three node processes with the end-to-end
# harness.
#
# Needs root (FUSE), consul and minio (.ci/deps builds them), fio, rclone
# and s3fs (.ci/deps --bench installs them).
#   bench/fuse.sh
# Sizes: LAKEMESH_BENCH_FUSE_SEQ_MIB (each sequential file, default 256;
# random files are twice that), LAKEMESH_BENCH_CKPT_MIB (checkpoint write,
# default 2048). A full run takes about 15-20 minutes on 2 cores.
# LAKEMESH_BENCH_FUSE_ONLY runs only some steps (comma-separated: warm,
# cold, rand, small, smallcold, randcold, ckpt, rss) and uploads only
# their data sets, e.g. the checkpoint rows alone in a few minutes:
#   LAKEMESH_BENCH_FUSE_ONLY=ckpt LAKEMESH_BENCH_CKPT_MIB=512 bench/fuse.sh
# The checkpoint is written twice: in the default write mode (through)
# and under a write_mode: back policy (the mode made for checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench/fuse.sh: run as root (it mounts lakemesh, rclone and s3fs)" >&2
  exit 2
fi
.ci/deps --bench >/dev/null
export PATH="${LAKEMESH_TOOLS:-$HOME/.cache/lakemesh/tools}/bin:$PATH"
LAKEMESH_BENCH=1 go test ./test -run '^TestMountBenchmarks$' -count=1 -v -timeout 60m 2>&1 | grep -v '^=== RUN\|^--- \|^PASS\|^ok'
