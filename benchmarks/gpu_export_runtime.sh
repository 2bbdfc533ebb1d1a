#!/usr/bin/env bash
# Export (ONNX Runtime CUDA parity and latency, plugin enqueue, AOT kernels) and the runtime on a GPU
# (GPU tests, pipeline vs engine-only) in one call, within a total time budget. Every step is
# time-limited and logged; a step that fails or times out does not stop the others.
#
#   OUT=/dir benchmarks/gpu_export_runtime.sh
#
# Writes three files under $OUT: export_runtime.md (step table and result tables; read this first),
# export_runtime.log (everything every step printed), export_runtime.json (the raw rows).
#
# Environment:
#   OUT           output folder (default ./gpu_export_runtime_out)
#   DATA_DIR      folder holding tno21/ and sequence/ (default: .carry_data in the checkout if present,
#                 else ../shared/data)
#   DRY=1         rehearsal on a machine without a GPU: ONNX Runtime's CPU provider, SIZE 64x64,
#                 generous budget; GPU-only steps report themselves skipped
#   SIZE          WxH of the exports (default 640x512)
#   PRESETS       presets for the ONNX Runtime check (default "edge paper"; edge uses the packaged
#                 weights, others random weights)
#   STEPS         subset of "tests plugins ort pipeline" (default all)
#   BUDGET_S      total seconds for the whole script (default 235; DRY 1800)
#   onnxruntime-gpu must import first (e.g. PYTHONPATH=/tmp/site); the script adds the NVIDIA
#   library folders of the installed pip wheels to LD_LIBRARY_PATH when ONNX Runtime cannot start
#   its CUDA provider without them.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
START=$SECONDS
DRY=${DRY:-0}
OUT=${OUT:-$REPO/gpu_export_runtime_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fe_export_runtime.XXXXXX")
LOG=$OUT/export_runtime.log
MD=$OUT/export_runtime.md
JSON=$OUT/export_runtime.json
: >"$LOG"
if [[ -z "${DATA_DIR:-}" ]]; then
  if [[ -d $REPO/.carry_data/tno21 ]]; then DATA_DIR=$REPO/.carry_data; else DATA_DIR=$REPO/../shared/data; fi
fi
export DATA_DIR PYTHONUNBUFFERED=1
if [[ $DRY == 1 ]]; then
  SIZE=${SIZE:-64x64}; BUDGET_S=${BUDGET_S:-1800}; PROVIDER=cpu; BACKEND=ort-cpu
else
  SIZE=${SIZE:-640x512}; BUDGET_S=${BUDGET_S:-235}; PROVIDER=cuda; BACKEND=ort-cuda
fi
PRESETS=${PRESETS:-"edge paper"}
STEPS=${STEPS:-"tests plugins ort pipeline"}
H=${SIZE#*x}; W=${SIZE%x*}
STATUS=()   # "step|status|seconds|note"

say() { echo "[$(date +%H:%M:%S) +$((SECONDS - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }
wanted() { [[ " $STEPS " == *" $1 "* ]]; }

# run SLUG NAME CAP_SECONDS CMD...: at most CAP seconds and never past the budget (10 s kept for the
# summary); output in $WORK/steps/SLUG.log, appended to the log.
run() {
  local slug=$1 name=$2 cap=$3; shift 3
  local limit=$(( $(left) - 10 )); (( limit > cap )) && limit=$cap
  if (( limit < 5 )); then
    STATUS+=("$name|not run|0|budget spent"); say "== $name: not run (budget spent)"; return
  fi
  say "== $name (limit ${limit} s): $*"
  local t0=$SECONDS rc
  mkdir -p "$WORK/steps"
  timeout --kill-after=5 "$limit" "$@" >"$WORK/steps/$slug.log" 2>&1; rc=$?
  cat "$WORK/steps/$slug.log" >>"$LOG"
  local st=ok; (( rc == 124 || rc == 137 )) && st="TIMEOUT (${limit} s)"; (( rc != 0 && rc != 124 && rc != 137 )) && st="FAILED (rc $rc)"
  STATUS+=("$name|$st|$((SECONDS - t0))|")
  say "== $name: $st after $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- environment
# Import the checkout as the installed package is laid out (export/ runtime/ kernels/ -> fusion_edge.*).
PKG=$WORK/pkg
mkdir -p "$PKG/fusion_edge"
for f in "$REPO"/fusion_edge/*; do ln -s "$f" "$PKG/fusion_edge/"; done
for sub in kernels runtime export; do ln -s "$REPO/$sub" "$PKG/fusion_edge/$sub"; done
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-$WORK/cupy_cache}
export PYTHONSAFEPATH=1  # keep `python -m` from putting the checkout itself first on sys.path

say "fusion-edge export/runtime GPU check: DRY=$DRY SIZE=$SIZE PRESETS='$PRESETS' STEPS='$STEPS' budget ${BUDGET_S} s"
say "data: $DATA_DIR; work: $WORK; commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 || true
  python3 - <<'EOF' 2>&1
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "cupy", "onnxruntime", "onnx", "numpy", "cv2", "tensorrt", "tensorrt_rtx"):
    try:
        m = importlib.import_module(name)
        extra = ""
        if name == "onnxruntime":
            extra = f" {m.get_available_providers()} from {m.__file__}"
        if name == "torch":
            extra = f" cuda {m.version.cuda} available {m.cuda.is_available()}"
        print(name, getattr(m, "__version__", "?") + extra)
    except Exception as exc:
        print(name, "absent:", type(exc).__name__, str(exc)[:120])
import fusion_edge.export.plugins, fusion_edge.runtime  # noqa: E401 - the symlink tree works
print("fusion_edge imports from", fusion_edge.runtime.__file__)
EOF
} | tee -a "$LOG" >"$WORK/environment.txt"

# Does ONNX Runtime start its CUDA provider in a process without torch (how the runtime runs)?
probe_ort() {
  python3 - "$WORK" <<'EOF' 2>&1
import sys
from pathlib import Path
import onnxruntime as ort
from fusion_edge.runtime.testing import write_reference_model
path = write_reference_model(Path(sys.argv[1]) / "probe" / "model.onnx", "max", size=(8, 8))
s = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
print("torch imported:", "torch" in sys.modules, "| session providers:", s.get_providers())
print("CUDA_OK" if s.get_providers()[0] == "CUDAExecutionProvider" else "CUDA_MISSING")
EOF
}
ORT_NOTE="n/a (DRY)"
if [[ $DRY != 1 ]]; then
  probe=$(probe_ort); echo "$probe" >>"$LOG"
  if [[ $probe == *CUDA_OK* ]]; then
    ORT_NOTE="CUDA provider starts without torch and without extra library paths"
  else
    NV_LIBS=$(python3 -c "
import glob, os, sys
dirs = sorted({os.path.dirname(p) for d in sys.path for p in glob.glob(os.path.join(d, 'nvidia', '**', 'lib*.so*'), recursive=True)})
print(':'.join(dirs))")
    export LD_LIBRARY_PATH="$NV_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    probe=$(probe_ort); echo "$probe" >>"$LOG"
    if [[ $probe == *CUDA_OK* ]]; then
      ORT_NOTE="CUDA provider needed the NVIDIA pip wheels' lib folders on LD_LIBRARY_PATH (set for every step)"
    else
      ORT_NOTE="CUDA provider does NOT start without torch, even with the NVIDIA lib folders (see the log)"
    fi
  fi
  say "onnxruntime: $ORT_NOTE"
fi

# ----------------------------------------------------- exports in the background
# Tracing big graphs takes minutes of CPU: export while the GPU tests run (nothing is timed then).
# Graphs go to $WORK, written atomically; the ONNX Runtime step exports itself whatever is missing.
declare -A EXPORT_PID
start_export() {  # start_export PRESET TRACE_DEVICE PRECISION...: one background process
  local preset=$1 trace=$2; shift 2
  local key="${preset}_$(IFS=_; echo "$*")"
  local cap=$(( $(left) - 60 )); (( cap < 10 )) && cap=10
  OMP_NUM_THREADS=4 timeout --kill-after=5 "$cap" python3 benchmarks/export_gpu_check.py --parts export \
    --presets "$preset" --precisions "$@" --size "$SIZE" --trace-device "$trace" \
    --work "$WORK/graphs" --out "$WORK/export_$key" >"$WORK/export_$key.log" 2>&1 &
  EXPORT_PID[$key]=$!
  say "export $preset $* $SIZE started in the background (pid $!, traced on $trace, limit ${cap} s)"
}
if wanted ort || wanted pipeline; then
  for preset in $PRESETS; do
    if [[ $preset == edge ]]; then  # small: both precisions at once, traced on the CPU
      start_export edge cpu fp32; start_export edge cpu fp16
    elif wanted ort; then  # large: traced on the GPU (much faster), one precision after the other (memory)
      start_export "$preset" "$([[ $DRY == 1 ]] && echo cpu || echo cuda)" fp32 fp16
    fi
  done
fi
wait_exports() {  # wait_exports PRESET: until its exports end, or the budget says stop
  local preset=$1 key t0=$SECONDS
  for key in "${!EXPORT_PID[@]}"; do
    [[ $key == ${preset}_* ]] || continue
    while kill -0 "${EXPORT_PID[$key]}" 2>/dev/null && (( $(left) > 40 )); do sleep 1; done
  done
  say "waited $((SECONDS - t0)) s for the $preset exports"
}

# ----------------------------------------------------------------------- steps
if wanted tests; then
  if [[ $DRY == 1 ]]; then  # no GPU: the GPU tests skip; the device paths run against CuPy/ORT stand-ins
    run pytest "pytest (runtime GPU tests; device paths on stand-ins)" 90 python3 -m pytest -q -rs \
      -p no:cacheprovider tests/test_runtime_gpu.py tests/test_runtime_gpu_paths.py
  else
    run pytest "pytest -m gpu (runtime)" 90 python3 -m pytest -q -rs -m gpu -p no:cacheprovider \
      tests/test_runtime_gpu.py
  fi
fi
if wanted plugins; then
  run plugins "plugin enqueue + AOT kernels" 60 python3 benchmarks/export_gpu_check.py --parts plugins \
    --out "$WORK/plugins"
fi
if wanted ort; then
  for preset in $PRESETS; do
    wait_exports "$preset"
    cap=70; trace=cpu; warmup=5; [[ $preset != edge ]] && { cap=90; warmup=3; }
    [[ $preset != edge && $DRY != 1 ]] && trace=cuda
    run "ort_$preset" "ONNX Runtime $PROVIDER: $preset" $cap python3 benchmarks/export_gpu_check.py --parts ort \
      --presets "$preset" --precisions fp32 fp16 --size "$SIZE" --provider "$PROVIDER" --work "$WORK/graphs" \
      --out "$WORK/ort_$preset" --trace-device $trace --warmup $warmup --iters 30 --max-seconds 5
    if [[ $preset == edge ]] && wanted pipeline; then
      graph=$WORK/graphs/edge_fp32_${H}x${W}.onnx
      extra=(); [[ $DRY != 1 ]] && extra=(--cuda-graph)
      if [[ -f $graph ]]; then
        run pipeline "pipeline vs engine-only ($BACKEND)" 60 python3 benchmarks/pipeline.py --model "$graph" \
          --reference max --backend "$BACKEND" --frames 100 --budget-s 5 --out "$WORK/pipeline.md" "${extra[@]}"
      else
        STATUS+=("pipeline vs engine-only|not run|0|no edge fp32 graph"); say "pipeline: no $graph"
      fi
    fi
  done
elif wanted pipeline; then
  wait_exports edge
  graph=$WORK/graphs/edge_fp32_${H}x${W}.onnx
  run pipeline "pipeline vs engine-only ($BACKEND)" 60 python3 benchmarks/pipeline.py --model "$graph" --reference max \
    --backend "$BACKEND" --frames 100 --budget-s 5 --out "$WORK/pipeline.md"
fi

# ---------------------------------------------------------------------- summary
for key in "${!EXPORT_PID[@]}"; do
  if kill -0 "${EXPORT_PID[$key]}" 2>/dev/null; then
    kill "${EXPORT_PID[$key]}" 2>/dev/null; STATUS+=("export $key|stopped (budget)|-|")
  else
    wait "${EXPORT_PID[$key]}"; rc=$?
    STATUS+=("export $key (background)|$([[ $rc == 0 ]] && echo ok || echo "FAILED (rc $rc)")|-|")
  fi
  { echo "== background export $key"; cat "$WORK/export_$key.log"; } >>"$LOG" 2>/dev/null
done

python3 - "$WORK" "$JSON" <<'EOF' >>"$LOG" 2>&1
import json, sys
from pathlib import Path
work, merged = Path(sys.argv[1]), {}
for path in sorted(work.glob("*/export_gpu_check_*.json")):
    data = json.loads(path.read_text())
    merged.setdefault("device", data.get("device"))
    for key, value in data.items():
        if key == "device":
            continue
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] += value
        elif key not in merged or not isinstance(merged[key], list):
            merged[key] = value
Path(sys.argv[2]).write_text(json.dumps(merged, indent=1))
EOF

{
  echo "# Export and runtime on the GPU ($(date -u +%Y-%m-%d\ %H:%M) UTC)"
  echo
  echo "DRY=$DRY, size $SIZE (WxH), presets: $PRESETS; total $((SECONDS - START)) s of a ${BUDGET_S} s budget."
  echo "ONNX Runtime without torch: $ORT_NOTE."
  echo
  echo '```'; cat "$WORK/environment.txt"; echo '```'
  echo
  echo "| step | status | seconds | note |"; echo "|---|---|---|---|"
  for s in "${STATUS[@]}"; do IFS='|' read -r a b c d <<<"$s"; echo "| $a | $b | $c | $d |"; done
  echo
  if [[ -f $WORK/steps/pytest.log ]]; then
    echo "## pytest (runtime GPU tests)"; echo '```'
    grep -E "^(FAILED|ERROR|SKIPPED)|[0-9]+ (passed|failed|skipped|error)" "$WORK/steps/pytest.log" | tail -15
    echo '```'
  fi
  for dir in "$WORK"/plugins "$WORK"/ort_*; do
    f=$(ls "$dir"/export_gpu_check_*.md 2>/dev/null | head -1)
    [[ -n $f ]] && { echo; echo "## $(basename "$dir" | tr _ ' ')"; sed '1{/^Device:/d}' "$f"; }
  done
  warnings=$(cat "$WORK"/steps/*.log 2>/dev/null | grep -iE "not assigned to the preferred|EP Error|Falling back|fell back|could not start|rejected our CUDA stream" | sed -E 's/^[^]]*\] //' | sort | uniq -c | sort -rn | head -8)
  if [[ -n $warnings ]]; then echo; echo "ONNX Runtime / runtime warnings seen (count, message):"; echo '```'; echo "$warnings" | cut -c1-300; echo '```'; fi
  f=$(ls "$WORK"/export_*/export_gpu_check_*.md 2>/dev/null)
  if [[ -n $f ]]; then
    echo; echo "## Exports"; echo "| graph | weights | nodes | MB | traced on | export s |"; echo "|---|---|---|---|---|---|"
    grep -h "^| [a-z]* fp" $f
  fi
  if [[ -f $WORK/pipeline.md ]]; then echo; echo "## Pipeline vs engine-only"; sed '1d' "$WORK/pipeline.md"; fi
  echo
  echo "Targets: ORT max abs diff <= 1e-4 (fp32) / 1e-2 (fp16); pipeline / engine >= 90%;"
  echo "added latency <= one frame period. Raw rows: export_runtime.json; full output: export_runtime.log."
} >"$MD"
say "done in $((SECONDS - START)) s: $MD"
echo; sed -n '/^| step/,/^$/p' "$MD"
rm -rf "$WORK"
