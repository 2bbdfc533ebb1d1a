#!/usr/bin/env bash
# Before / after on one GPU machine: the same benchmarks on two source trees, in one call.
#
#   benchmarks/ab_kernels.sh BASE_TREE [NEW_TREE]
#
# A tree is a folder with fusion_edge/, kernels/, runtime/, export/ and benchmarks/, e.g. the commit to
# compare against: mkdir base && git archive REV fusion_edge kernels runtime export benchmarks | tar -x -C base
# NEW_TREE defaults to this checkout. Steps (STEPS, in this order):
#   variants  benchmarks/scan_variants.py --plans-only on both trees, alternating base, new, base, new
#             (ROUNDS pairs) so that drift hits both alike; every output is checked against the split core
#   compiled  benchmarks/compile_variants.py --scope blocks --variants stream for each of PRESETS on both trees,
#             all compiled at once, timed one at a time under a lock (compilations are CPU work)
#   tests     the GPU kernel tests on the new tree (what remains of BUDGET seconds)
# Output in OUT (default /tmp/fusion_edge_ab): ab.md (benchmarks/ab_summary.py), every log and table, and
# all.tgz holding them (a transfer that brings back few files still gets everything).
set -u
BASE=$(cd "${1:?usage: ab_kernels.sh BASE_TREE [NEW_TREE]}" && pwd)
cd "$(dirname "$0")/.."
REPO=$PWD
NEW=$(cd "${2:-$REPO}" && pwd)
OUT=${OUT:-/tmp/fusion_edge_ab}
STEPS=${STEPS:-"variants compiled tests"}
ROUNDS=${ROUNDS:-2}
PRESETS=${PRESETS:-"edge paper"}
BUDGET=${BUDGET:-560}
mkdir -p "$OUT"
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/fusion_edge_cupy_cache} PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1

# Each tree imported as the installed package would be laid out (kernels/ -> fusion_edge.kernels).
shim() {  # shim TREE -> prints a PYTHONPATH folder
  local pkg
  pkg=$(mktemp -d)
  mkdir -p "$pkg/fusion_edge"
  for f in "$1"/fusion_edge/*; do ln -s "$f" "$pkg/fusion_edge/"; done
  for sub in kernels runtime export; do [ -d "$1/$sub" ] && ln -s "$1/$sub" "$pkg/fusion_edge/$sub"; done
  echo "$pkg"
}
declare -A PKG=([base]=$(shim "$BASE") [new]=$(shim "$NEW"))
declare -A TREE=([base]=$BASE [new]=$NEW)
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > "$OUT/device.txt" 2>&1

for t in base new; do  # build both trees' kernels at once (the NVRTC cache is keyed on the source)
  (cd "${TREE[$t]}" && PYTHONPATH=${PKG[$t]} python3 benchmarks/prebuild_kernels.py --families selective_scan,es2d \
     > "$OUT/build_$t.log" 2>&1) &
done
wait
echo "build: $(elapsed) s"

if [[ " $STEPS " == *" variants "* ]]; then
  for round in $(seq 1 "$ROUNDS"); do
    for t in base new; do
      (cd "${TREE[$t]}" && PYTHONPATH=${PKG[$t]} timeout 200 python3 benchmarks/scan_variants.py --plans-only \
         --budget 150 --out "$OUT/variants_${t}_$round" > "$OUT/variants_${t}_$round.log" 2>&1)
      echo "variants $t round $round: rc $?, $(elapsed) s"
    done
  done
fi

if [[ " $STEPS " == *" compiled "* ]]; then
  BAR=$(mktemp -d)
  count=0
  for p in $PRESETS; do count=$((count + 2)); done
  limit=$(( BUDGET - $(elapsed) - 20 ))
  (( limit < 60 )) && limit=60
  for t in base new; do
    for p in $PRESETS; do
      (cd "${TREE[$t]}" && PYTHONPATH=${PKG[$t]} timeout "$limit" python3 \
         benchmarks/compile_variants.py --preset "$p" --scope blocks --variants stream --jobs 1 --top 14 \
         --lock "$BAR/gpu.lock" --barrier "$BAR" --barrier-count "$count" --compile-timeout 400 \
         --out "$OUT/compiled_${p}_$t.md" > "$OUT/compiled_${p}_$t.log" 2>&1
       echo "compiled $p $t: rc $?, $(elapsed) s") &
    done
  done
  wait
fi

if [[ " $STEPS " == *" tests "* ]]; then
  left=$(( BUDGET - $(elapsed) ))
  if (( left > 30 )); then
    PYTHONPATH=${PKG[new]} timeout "$left" python3 -m pytest -q -m gpu -p no:cacheprovider \
      "$REPO/tests/test_kernels_gpu.py" > "$OUT/tests.log" 2>&1
    echo "tests: rc $?, $(elapsed) s"
    grep -E "passed|failed|error" "$OUT/tests.log" | tail -3
  else
    echo "tests: not run ($left s left of BUDGET)"
  fi
fi

python3 "$NEW/benchmarks/ab_summary.py" "$OUT" --out "$OUT/ab.md" > /dev/null 2>"$OUT/summary.log" \
  || echo "summary failed: $(tail -1 "$OUT/summary.log")"
(cd "$OUT" && tar czf all.tgz --exclude=all.tgz . 2>/dev/null)
grep -E "Geometric|^\| (edge|paper|tiny) \| stream" "$OUT/ab.md" 2>/dev/null
