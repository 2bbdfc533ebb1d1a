#!/usr/bin/env bash
# Everything GPU-side for the kernels in one run: environment, GPU tests, benchmark.
# Logs and tables go to $OUT (default /tmp/fusion_edge_gpu); a short summary is printed last.
#   SUITE="tests bench compiled" steps to run (compiled: the chunked op under torch.compile)
#   TEST_ARGS="-k scan"          extra pytest arguments
#   BENCH_ARGS="--sections scan" extra benchmarks/kernels.py arguments
#   TEST_TIMEOUT / BENCH_TIMEOUT  seconds per step (300 / 480)
set -u
OUT=${OUT:-/tmp/fusion_edge_gpu}
SUITE=${SUITE:-"tests bench compiled"}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
REPO=$PWD

# Import the checkout as the installed package would be laid out (kernels/ -> fusion_edge.kernels).
PKG=$(mktemp -d)
mkdir -p "$PKG/fusion_edge"
for f in "$REPO"/fusion_edge/*; do ln -s "$f" "$PKG/fusion_edge/"; done
for sub in kernels runtime export; do [ -d "$REPO/$sub" ] && ln -s "$REPO/$sub" "$PKG/fusion_edge/$sub"; done
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
# (PYTHONSAFEPATH keeps `python -m` from putting the checkout itself first on sys.path)
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/fusion_edge_cupy_cache}

{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
  python3 -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__, torch.cuda.get_device_name())"
} > "$OUT/device.txt" 2>&1

status=0
rm -f "$OUT/.bench_done"
if [[ " $SUITE " == *" compiled "* ]]; then
  # torch.compile of the chunked op takes minutes of CPU: compile while the tests and the
  # benchmark run, time once the benchmark is done (.bench_done) so timings never overlap.
  timeout "${COMPILED_TIMEOUT:-600}" python3 benchmarks/kernels.py --sections compiled \
    --compile-budget "${COMPILE_BUDGET:-120}" --wait-for "$OUT/.bench_done" --out "$OUT/compiled.md" \
    > "$OUT/compiled.log" 2>&1 &
  compiled_pid=$!
fi
if [[ " $SUITE " == *" tests "* ]]; then
  t0=$(date +%s)
  PYTHONSAFEPATH=1 timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_kernels_gpu.py ${TEST_ARGS:-} > "$OUT/tests.log" 2>&1 || status=1
  echo "tests: $(( $(date +%s) - t0 )) s" >> "$OUT/device.txt"
fi
if [[ " $SUITE " == *" bench "* ]]; then
  t0=$(date +%s)
  timeout "${BENCH_TIMEOUT:-480}" python3 benchmarks/kernels.py --out "$OUT/kernels.md" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1 || status=1
  echo "bench: $(( $(date +%s) - t0 )) s" >> "$OUT/device.txt"
fi

touch "$OUT/.bench_done"
if [ -n "${compiled_pid:-}" ]; then
  wait "$compiled_pid" || status=1
  rm -f "$OUT/.bench_done"
fi

echo "== device"; cat "$OUT/device.txt"
if [ -f "$OUT/tests.log" ]; then
  echo "== tests"; grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | tail -40
fi
if [ -f "$OUT/bench.log" ]; then echo "== bench"; tail -60 "$OUT/bench.log"; fi
if [ -f "$OUT/compiled.log" ]; then echo "== compiled"; tail -12 "$OUT/compiled.log"; fi
exit $status
