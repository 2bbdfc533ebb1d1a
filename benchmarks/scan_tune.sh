#!/usr/bin/env bash
# Scan kernels in one GPU run: build every entry point in parallel, run the GPU tests, then the
# plan sweep (benchmarks/scan_variants.py) and, if asked, the kernel tables (benchmarks/kernels.py).
# Logs and tables go to $OUT (default /tmp/fusion_edge_scan); a short summary is printed last.
#   STEPS="build tests variants bench"   steps to run
#   TEST_TIMEOUT / VARIANTS_BUDGET / BENCH_TIMEOUT   seconds (60 / 45 / 120)
#   VARIANTS_ARGS="--quick"               extra benchmarks/scan_variants.py arguments
#   TEST_WORKERS=8                        pytest-xdist workers, where it is installed
#   BENCH_ARGS="--sections scan,es2d"     extra benchmarks/kernels.py arguments
set -u
OUT=${OUT:-/tmp/fusion_edge_scan}
STEPS=${STEPS:-"build tests variants"}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
REPO=$PWD
T_START=$(date +%s)

# Import the checkout as the installed package would be laid out (kernels/ -> fusion_edge.kernels).
PKG=$(mktemp -d)
mkdir -p "$PKG/fusion_edge"
for f in "$REPO"/fusion_edge/*; do ln -s "$f" "$PKG/fusion_edge/"; done
for sub in kernels runtime export; do [ -d "$REPO/$sub" ] && ln -s "$REPO/$sub" "$PKG/fusion_edge/$sub"; done
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/fusion_edge_cupy_cache}
export PYTHONUNBUFFERED=1

{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
  git -C "$REPO" log -1 --format='commit %h %s' 2>/dev/null || true
} > "$OUT/device.txt" 2>&1
stamp() { echo "$1: $(( $(date +%s) - T_START )) s since start" >> "$OUT/device.txt"; }

status=0
if [[ " $STEPS " == *" build "* ]]; then
  python3 benchmarks/prebuild_kernels.py --families selective_scan,es2d,ldc > "$OUT/build.log" 2>&1 || status=1
  stamp build
fi
if [[ " $STEPS " == *" tests "* ]]; then
  XDIST=""
  python3 -c "import xdist" 2>/dev/null && XDIST="-n ${TEST_WORKERS:-8}"
  PYTHONSAFEPATH=1 timeout "${TEST_TIMEOUT:-60}" python3 -m pytest -q -m gpu -p no:cacheprovider $XDIST \
    tests/test_kernels_gpu.py > "$OUT/tests.log" 2>&1 || status=1
  stamp tests
fi
if [[ " $STEPS " == *" variants "* ]]; then
  timeout $(( ${VARIANTS_BUDGET:-45} + 30 )) python3 benchmarks/scan_variants.py --out "$OUT" \
    --budget "${VARIANTS_BUDGET:-45}" ${VARIANTS_ARGS:-} > "$OUT/variants.log" 2>&1 || status=1
  stamp variants
fi
if [[ " $STEPS " == *" bench "* ]]; then
  timeout "${BENCH_TIMEOUT:-120}" python3 benchmarks/kernels.py --out "$OUT/kernels.md" ${BENCH_ARGS:-} \
    > "$OUT/bench.log" 2>&1 || status=1
  stamp bench
fi

echo "== device"; cat "$OUT/device.txt"
[ -f "$OUT/build.log" ] && { echo "== build"; tail -5 "$OUT/build.log"; }
if [ -f "$OUT/tests.log" ]; then
  echo "== tests"; grep -E "^(FAILED|ERROR)|passed|failed|error" "$OUT/tests.log" | tail -25
fi
[ -f "$OUT/variants.log" ] && { echo "== variants"; grep -v "^|" "$OUT/variants.log" | tail -8; }
[ -f "$OUT/bench.log" ] && { echo "== bench"; tail -12 "$OUT/bench.log"; }
exit $status
