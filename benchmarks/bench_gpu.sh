#!/usr/bin/env bash
# The GPU latency table: every backend of `fusion-edge bench`, batch 1, sizes 256x256 480x640
# 512x640 1024x1280, for the presets in $PRESETS. Everything is written under $OUT.
#
#   benchmarks/bench_gpu.sh [PART...]      PART: fp16 fp32 compile merge (default: all, in that order)
#
#   fp16     all backends but torch-compile, fp16 (autocast for torch, fp16 ONNX/engine)
#   fp32     the same in fp32, plus ONNX Runtime on the CPU
#   compile  torch.compile of the chunked model, fp16, 512x640 (compiling takes minutes per size)
#   merge    one table/JSON/plot of every run found under $OUT: $OUT/bench_gpu.{md,json,png}
#
# Environment:
#   OUT            output folder (default ./bench_gpu_out)
#   PRESETS        presets to run (default "edge paper tiny")
#   ORT_GPU_WHEEL  an onnxruntime-gpu wheel; installed into a private folder so that ort-cuda runs
#                  (without it ort-cuda is listed as skipped, with the reason)
#   WARMUP ITERS MAX_SECONDS   timing settings (default 10, 50, 60 s per configuration)
#   SIZES          input sizes (default "256x256 480x640 512x640 1024x1280")
#   COMPILE_SIZES  input sizes of the compile part (default 512x640)
#
# Each part of each preset is its own process writing its own folder, so a part that runs out
# of time loses only itself. To stay under a per-command time limit, run one preset per call:
#   OUT=/some/dir PRESETS=edge benchmarks/bench_gpu.sh fp16 fp32 compile
#   OUT=/some/dir PRESETS=paper benchmarks/bench_gpu.sh fp16 fp32 compile
#   OUT=/some/dir benchmarks/bench_gpu.sh merge
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/bench_gpu_out}
PRESETS=${PRESETS:-"edge paper tiny"}
WARMUP=${WARMUP:-10}
ITERS=${ITERS:-50}
MAX_SECONDS=${MAX_SECONDS:-60}
PARTS=("$@")
[[ ${#PARTS[@]} -eq 0 ]] && PARTS=(fp16 fp32 compile merge)
mkdir -p "$OUT"

# The package must import as installed (fusion_edge.export and .runtime live outside fusion_edge/).
# Without an install, a tree of links lays the folders out as the installed package does.
if ! python3 -c "import fusion_edge.export.onnx_export, fusion_edge.runtime" 2>/dev/null; then
    if ! python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip_install.log" 2>&1; then
        SHIM=${TMPDIR:-/tmp}/fusion-edge-shim
        rm -rf "$SHIM" && mkdir -p "$SHIM/fusion_edge"
        ln -s "$PWD"/fusion_edge/* "$SHIM/fusion_edge/"
        for sub in export runtime kernels; do ln -s "$PWD/$sub" "$SHIM/fusion_edge/$sub"; done
        export PYTHONPATH=$SHIM${PYTHONPATH:+:$PYTHONPATH}
        python3 -c "import fusion_edge.export.onnx_export, fusion_edge.runtime" \
            || { echo "fusion_edge does not import (see $OUT/pip_install.log)"; exit 1; }
    fi
fi
if [[ -n "${ORT_GPU_WHEEL:-}" ]]; then
    ORT_SITE=${TMPDIR:-/tmp}/fusion-edge-ort-gpu
    python3 -m pip install -q --no-index --no-deps --target "$ORT_SITE" "$ORT_GPU_WHEEL" \
        >"$OUT/ort_gpu_install.log" 2>&1 || echo "onnxruntime-gpu did not install (see $OUT/ort_gpu_install.log)"
    export PYTHONPATH=$ORT_SITE${PYTHONPATH:+:$PYTHONPATH}
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" || true
} >"$OUT/device.txt" 2>&1

read -r -a SIZES <<<"${SIZES:-256x256 480x640 512x640 1024x1280}"
read -r -a COMPILE_SIZES <<<"${COMPILE_SIZES:-512x640}"
bench() {  # bench NAME ARGS...: one process, one output folder, its log beside it
    local name=$1; shift
    echo "== $name"
    local start=$SECONDS
    if python3 -m fusion_edge.cli bench --warmup "$WARMUP" --iters "$ITERS" --max-seconds "$MAX_SECONDS" \
        --out "$OUT/$name" "$@" >"$OUT/$name.log" 2>&1; then
        echo "   done in $((SECONDS - start)) s: $OUT/$name/bench.md"
    else
        echo "   FAILED after $((SECONDS - start)) s; last lines of $OUT/$name.log:"; tail -5 "$OUT/$name.log"
    fi
}

for part in "${PARTS[@]}"; do
    for preset in $PRESETS; do
        case $part in
            fp16) bench "${preset}_fp16" --preset "$preset" --fp16 --size "${SIZES[@]}" \
                      --backend torch-chunked torch-cuda torch-cuda-graph ort-cuda tensorrt ;;
            fp32) bench "${preset}_fp32" --preset "$preset" --size "${SIZES[@]}" \
                      --backend torch-chunked torch-cuda torch-cuda-graph ort-cuda tensorrt ort-cpu ;;
            compile) bench "${preset}_fp16_compile" --preset "$preset" --fp16 --size "${COMPILE_SIZES[@]}" \
                         --backend torch-compile ;;
            merge) ;;
            *) echo "unknown part $part (fp16, fp32, compile, merge)"; exit 2 ;;
        esac
    done
    if [[ $part == merge ]]; then
        mapfile -t runs < <(find "$OUT" -mindepth 2 -maxdepth 2 -name bench.json | sort)
        if [[ ${#runs[@]} -eq 0 ]]; then echo "nothing to merge under $OUT"; exit 1; fi
        python3 -m fusion_edge.bench.merge "${runs[@]}" --out "$OUT" --name bench_gpu
        grep -h "^| torch-cuda-graph | 512x640\|^| tensorrt | 512x640\|^| torch-cuda | 512x640\|^## " \
            "$OUT/bench_gpu.md" || true
    fi
done
