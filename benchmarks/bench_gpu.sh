#!/usr/bin/env bash
# The GPU latency table in one call: presets edge, paper, tiny; batch 1, fp16; every torch backend
# and ONNX Runtime (CPU for edge; CUDA where onnxruntime-gpu imports). Budget 520 s (BUDGET; cold compiler caches: the paper blocks alone compile in about 150 s).
#
#   OUT=/some/dir QUICK=1 benchmarks/bench_gpu.sh    run first (about 4 minutes): the GPU tests of the
#                       custom ops and dispatch, then edge at 512x640: torch-cuda, torch-cuda-graph and
#                       the compiled backends, in both fp16 modes (autocast, and a float16 model copy)
#   OUT=/some/dir benchmarks/bench_gpu.sh            the full table
#
# Output: $OUT/bench_gpu.{md,json,png} (all steps merged, one section per preset and precision; the
# header says which steps ran, how long, and which did not fit) and $OUT/bench_gpu.log (every step).
# Each step is one `fusion-edge bench` process with its own time budget: it stops starting
# configurations when the budget is spent (they are listed as skipped, with the reason), a compilation
# past it is interrupted, and what it measured is written after every configuration; `timeout` stops
# a step that hangs. A step that fails never stops the others. Steps run in order of importance and
# one that no longer fits in BUDGET is listed as not run.
#
# Steps of the full run, in this order (STEPS="..." runs others, in the order given):
#   edge-eager edge-target paper-eager paper-target tiny-eager ort-cpu tiny-compiled edge-compiled
#   paper-compiled chunked-compile
#   *-eager          every size: torch-chunked (256x256 and 512x640 only), torch-cuda, torch-cuda-graph;
#                    ort-cuda at 512x640
#   *-target         512x640: torch-cuda-compile and -graph; the whole model compiled for edge
#                    (EDGE_SCOPE=model), block by block for paper (PAPER_SCOPE=blocks: its whole-model
#                    compilation takes minutes)
#   ort-cpu          edge, fp32, ONNX Runtime on the CPU at 256x256 and 512x640
#   *-compiled       the compiled backends at the other sizes (tiny: all four), block by block
#   chunked-compile  torch-compile (the chunked model) for edge at 512x640
# With cold compiler caches the compiled steps after ort-cpu are not expected to fit in one call:
# run them in a second one, e.g. STEPS="tiny-compiled edge-compiled paper-compiled chunked-compile".
# Left out as too slow for one call: torch-chunked at 480x640 and 1024x1280, torch-compile of the
# chunked model for tiny and paper and at other sizes (minutes of compilation each), ONNX Runtime CPU
# for tiny and paper.
#
# Environment: OUT, BUDGET, STEPS, QUICK, PROFILE (N: profile N calls of each PyTorch configuration, see
# `fusion-edge bench --profile`), CAP_SCALE (multiplies every step's cap, with a larger BUDGET), TORCH_FP16
# (half|autocast: fp16 of the torch backends in the full run; half, a float16 model copy, is the faster
# path and the one the README's headline uses), EDGE_SCOPE, PAPER_SCOPE (model|blocks), WARMUP ITERS MAX_SECONDS MIN_ITERS,
# ORT_GPU_WHEEL (an onnxruntime-gpu wheel installed into a private folder; one already on PYTHONPATH
# works too). Compiled code is cached under /tmp/fusion-edge-cache, so on the same machine a QUICK run
# shortens the full run's edge-target step.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

OUT=${OUT:-$REPO/bench_gpu_out}
mkdir -p "$OUT"
LOG=$OUT/bench_gpu.log
: >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fusion-edge-bench.XXXXXX")
if [[ -n ${QUICK:-} ]]; then BUDGET=${BUDGET:-250}; else BUDGET=${BUDGET:-520}; fi
WARMUP=${WARMUP:-5}
ITERS=${ITERS:-30}
MAX_SECONDS=${MAX_SECONDS:-4}   # per configuration: slow backends time fewer calls (MIN_ITERS at least)
MIN_ITERS=${MIN_ITERS:-10}
TORCH_FP16=${TORCH_FP16:-half}
RESERVE=15    # seconds kept for merging at the end
MIN_STEP=20   # a step with less time than this is not started (STEP_MIN=N before a step raises it)
T0=$SECONDS
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/fusion-edge-cache/cupy}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/fusion-edge-cache/inductor}

say() { echo "$*" | tee -a "$LOG"; }

# Import the checkout as the installed package is laid out (kernels/ runtime/ export/ inside fusion_edge).
SHIM=$WORK/pkg
mkdir -p "$SHIM/fusion_edge"
for f in "$REPO"/fusion_edge/*; do ln -s "$f" "$SHIM/fusion_edge/"; done
for sub in kernels runtime export; do [[ -d $REPO/$sub ]] && ln -s "$REPO/$sub" "$SHIM/fusion_edge/$sub"; done
export PYTHONPATH=$SHIM${PYTHONPATH:+:$PYTHONPATH}
if [[ -n ${ORT_GPU_WHEEL:-} ]]; then
    ORT_SITE=$WORK/ort-gpu
    python3 -m pip install -q --no-index --no-deps --target "$ORT_SITE" "$ORT_GPU_WHEEL" >>"$LOG" 2>&1 \
        || say "onnxruntime-gpu did not install from $ORT_GPU_WHEEL (see the log)"
    export PYTHONPATH=$ORT_SITE:$PYTHONPATH
fi
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader || echo "no GPU (nvidia-smi)"
  python3 - <<'PY'
import importlib
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "")
for name in ("triton", "cupy", "onnxruntime"):
    try:
        module = importlib.import_module(name)
        extra = module.get_available_providers() if name == "onnxruntime" else ""
        print(name, module.__version__, extra)
    except Exception as exc:  # noqa: BLE001
        print(name, "not importable:", exc)
import fusion_edge.kernels
import fusion_edge.ops
print("fusion_edge kernels available:", fusion_edge.kernels.is_available())
PY
} >"$WORK/device.txt" 2>&1
cat "$WORK/device.txt" >>"$LOG"
say "device: $(head -1 "$WORK/device.txt")"

NOTES=()
left() { echo $(( BUDGET - (SECONDS - T0) - RESERVE )); }

run_step() {  # run_step NAME CAP COMMAND...: at most CAP seconds (less if the budget is shorter)
    local name=$1 cap=$(( $2 * ${CAP_SCALE:-1} )); shift 2
    local avail; avail=$(left)
    if (( avail < ${STEP_MIN:-$MIN_STEP} )); then
        say "== $name: not run (${BUDGET} s budget spent)"; NOTES+=("$name: not run, out of the ${BUDGET} s budget")
        return
    fi
    (( cap > avail )) && cap=$avail
    say "== $name (at most $cap s)"
    local start=$SECONDS rc=0
    timeout -k 10 "$cap" env STEP_BUDGET=$(( cap - 12 )) "$@" >>"$LOG" 2>&1 || rc=$?
    local took=$(( SECONDS - start ))
    case $rc in
        0) NOTES+=("$name: done in $took s") ;;
        124|137) NOTES+=("$name: stopped by its $cap s limit after $took s (what it measured is kept)") ;;
        *) NOTES+=("$name: exit code $rc after $took s (see bench_gpu.log)") ;;
    esac
    say "   $name: exit $rc after $took s"
}

bench() {  # bench NAME CAP ARGS...: one fusion-edge bench process writing $WORK/runs/NAME
    local name=$1 cap=$2; shift 2
    run_step "$name" "$cap" bash -c 'exec python3 -m fusion_edge.cli bench --time-budget "$STEP_BUDGET" \
        --compile-timeout "$STEP_BUDGET" "$@"' _ --warmup "$WARMUP" --iters "$ITERS" --max-seconds "$MAX_SECONDS" \
        --min-iters "$MIN_ITERS" --out "$WORK/runs/$name" ${PROFILE:+--profile "$PROFILE"} "$@"
}

COMPILED="torch-cuda-compile torch-cuda-compile-graph"
ALL_SIZES="512x640 256x256 480x640 1024x1280"   # 512x640 first: the targets' size
OTHER_SIZES=256x256,480x640,1024x1280

eager() {  # eager PRESET CAP: the backends that need no compilation, every size (and ort-cuda at 512x640)
    bench "$1-eager" "$2" --fp16 --preset "$1" --torch-fp16 "$TORCH_FP16" --size $ALL_SIZES \
        --backend torch-chunked torch-cuda torch-cuda-graph ort-cuda \
        --backend-sizes torch-chunked=256x256,512x640 ort-cuda=512x640
}
target() {  # target PRESET CAP SCOPE [FP16_MODE [MORE_BACKENDS]]: our kernels compiled, 512x640
    local mode=${4:-$TORCH_FP16}
    bench "$1-target-$mode" "$2" --fp16 --preset "$1" --torch-fp16 "$mode" --compile-scope "$3" --size 512x640 \
        --backend ${5:-} $COMPILED
}
compiled() {  # compiled PRESET CAP SIZES: our kernels compiled at more sizes (scope blocks: short compiles)
    local sizes=$3
    bench "$1-compiled" "$2" --fp16 --preset "$1" --torch-fp16 "$TORCH_FP16" --compile-scope blocks \
        --size ${sizes//,/ } --backend $COMPILED --no-cost
}

if [[ -n ${QUICK:-} ]]; then
    run_step gpu-tests 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_torch_ops.py \
        tests/test_kernels_gpu.py -k "gpu_ops or gpu_model or dispatch or torch_op_forward or model_forward"
    target edge 110 model autocast "torch-cuda torch-cuda-graph"
    target edge 100 model half "torch-cuda-graph"
else
    for step in ${STEPS:-edge-eager edge-target paper-eager paper-target tiny-eager ort-cpu tiny-compiled \
                          edge-compiled paper-compiled chunked-compile}; do
        case $step in
            edge-eager) eager edge 50 ;;
            paper-eager) eager paper 65 ;;
            tiny-eager) eager tiny 55 ;;
            edge-target) STEP_MIN=45 target edge 150 "${EDGE_SCOPE:-blocks}" ;;
            paper-target) STEP_MIN=45 target paper 210 "${PAPER_SCOPE:-blocks}" ;;
            tiny-compiled) STEP_MIN=45 compiled tiny 70 "512x640,$OTHER_SIZES" ;;
            edge-compiled) STEP_MIN=45 compiled edge 70 "$OTHER_SIZES" ;;
            paper-compiled) STEP_MIN=45 compiled paper 70 "$OTHER_SIZES" ;;
            ort-cpu) bench ort-cpu 45 --preset edge --size 512x640 256x256 --backend ort-cpu --warmup 2 --iters 20 \
                         --max-seconds 5 --min-iters 5 ;;
            chunked-compile) STEP_MIN=60 bench chunked-compile 90 --fp16 --preset edge --torch-fp16 "$TORCH_FP16" \
                                 --size 512x640 --backend torch-compile --no-cost ;;
            *) say "unknown step $step"; NOTES+=("$step: unknown step") ;;
        esac
    done
fi

say "== merge"
mapfile -t runs < <(find "$WORK/runs" -mindepth 2 -maxdepth 2 -name bench.json 2>/dev/null | sort)
note="Measured with benchmarks/bench_gpu.sh${QUICK:+ (QUICK)} in $(( SECONDS - T0 )) s (budget $BUDGET s): "
note+=$(IFS=';'; echo "${NOTES[*]}" | sed 's/;/; /g')"."
if (( ${#runs[@]} )); then
    python3 -m fusion_edge.bench.merge "${runs[@]}" --out "$OUT" --name bench_gpu --note "$note" >>"$LOG" 2>&1 \
        || say "merge failed (see bench_gpu.log)"
else
    say "no step produced results"
fi
say "$note"
if [[ -f $OUT/bench_gpu.md ]]; then
    grep -E "^## |^\| torch-cuda(-compile)?(-graph)? \| 512x640|^- torch-cuda-compile" "$OUT/bench_gpu.md" | tee -a "$LOG"
fi
rm -rf "$WORK"
