#!/usr/bin/env bash
# The training run of the packaged default weights (fusion_edge/weights/edge.pt + edge.json): the
# `edge` preset fine-tuned on the 221 RoadScene pairs on one GPU for a fixed time, then scored on
# the 21 TNO pairs beside the baselines. On a machine with two GPUs, in two phases:
#
#   PHASE=ddp bash benchmarks/train_roadscene.sh      # first, <= 45 s: torchrun DDP smoke test on both GPUs
#   PHASE=train bash benchmarks/train_roadscene.sh &  # then, in the background: the run on GPU $TRAIN_GPU + eval
#   wait                                              # (PHASE=all, the default, runs both in turn)
#
# Environment (paths relative to the repository root or absolute):
#   OUT            results, at most 5 files (default out/train_roadscene):
#                  ddp_smoke.log, train.log (run log + summary), edge.pt + edge.json (the weights as
#                  shipped, fp16 state_dict + training record), tno21_eval.md (metric table)
#   DATA_DIR       RoadScene folder with ir/ and vis/ (default .carry_data/roadscene)
#   TNO_DIR        tno21 folder with ir/ and vis/ (default .carry_data/tno21)
#   INIT           weights to fine-tune from (default fusion_edge/weights/edge.pt; none: from scratch)
#   TRAIN_SECONDS  training time of the main run (default 480); the cosine schedule follows it.
#                  The phase takes about TRAIN_SECONDS + 200 s (start, final validation, export, and the
#                  tno21 evaluation of two weight sets with baselines on the CPU).
#   TRAIN_GPU      GPU of the main run (default 1)
#   CROP BATCH LR WARMUP LOSS   recipe (defaults 256, 16, 3e-4, 300, reference)
#   TRAIN_ARGS     extra `fusion-edge train` options for the main run (they win)
#   DEVICE         cuda (default) or cpu: a dry run of every phase on the CPU (DDP over gloo, small crops)
#   WORK           scratch folder for checkpoints (default a new temporary folder)
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
PHASE=${PHASE:-all}
DEVICE=${DEVICE:-cuda}
OUT=$(realpath -m "${OUT:-out/train_roadscene}")
DATA_DIR=$(realpath -m "${DATA_DIR:-.carry_data/roadscene}")
TNO_DIR=$(realpath -m "${TNO_DIR:-.carry_data/tno21}")
INIT=${INIT:-fusion_edge/weights/edge.pt}
[ "$INIT" != none ] && INIT=$(realpath -m "$INIT")
TRAIN_SECONDS=${TRAIN_SECONDS:-480}
TRAIN_GPU=${TRAIN_GPU:-1}
WORK=$(realpath -m "${WORK:-$(mktemp -d)}")
case "$PHASE" in ddp|train|all) ;; *) echo "PHASE must be ddp, train or all, got $PHASE" >&2; exit 2 ;; esac
case "$DEVICE" in cuda|cpu) ;; *) echo "DEVICE must be cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac
for dir in "$DATA_DIR" "$TNO_DIR"; do
  [ -d "$dir/ir" ] && [ -d "$dir/vis" ] || { echo "no ir/ and vis/ in $dir (set DATA_DIR / TNO_DIR)" >&2; exit 2; }
done
[ "$INIT" = none ] || [ -f "$INIT" ] || { echo "INIT weights not found: $INIT" >&2; exit 2; }
if [ "$DEVICE" = cpu ]; then  # dry run: the same commands, small enough for a CPU
  CROP=${CROP:-64} BATCH=${BATCH:-2} WARMUP=${WARMUP:-2} SMOKE="--crop 64 --batch 2 --max-steps 3 --val-max-side 64"
  VAL="--val-max-side 64"
else
  SMOKE="--crop 128 --batch 8 --max-steps 12 --val-max-side 128"
  VAL="--val-max-side 256"
fi
CROP=${CROP:-256} BATCH=${BATCH:-16} LR=${LR:-3e-4} WARMUP=${WARMUP:-300} LOSS=${LOSS:-reference}
INIT_ARGS=(--head-bias-init data)
[ "$INIT" = none ] || INIT_ARGS=(--init "$INIT")
mkdir -p "$OUT" "$WORK"

# Import the checkout laid out as the installed package (kernels/ -> fusion_edge.kernels, ...), and
# run from that tree: `python -m` puts the working directory first on sys.path.
PKG=$WORK/pkg
mkdir -p "$PKG/fusion_edge"
for f in "$REPO"/fusion_edge/*; do ln -sfn "$f" "$PKG/fusion_edge/"; done
for sub in kernels runtime export; do [ -d "$REPO/$sub" ] && ln -sfn "$REPO/$sub" "$PKG/fusion_edge/$sub"; done
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/fusion_edge_cupy_cache}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # no NVLink multicast
CLI=(python3 -m fusion_edge.cli)

ddp_smoke() {
  # Two processes, a few steps: DDP starts, the ranks end with identical weights, and only rank 0
  # writes (one train_log line per epoch end, one checkpoint).
  local log=$OUT/ddp_smoke.log run=$WORK/ddp t0=$SECONDS rc
  rm -rf "$run"
  echo "== DDP smoke test: torchrun, 2 processes, device $DEVICE ($(date -u +%H:%M:%S))" | tee "$log"
  (cd "$PKG" && timeout 90 python3 -m torch.distributed.run --standalone --nproc-per-node 2 -m fusion_edge.cli train \
    --data "$DATA_DIR" --out "$run" --preset edge "${INIT_ARGS[@]}" $SMOKE --repeats 1 --epochs 1000 \
    --lr 1e-4 --val-fraction 0.05 --log-every 4 --device "$DEVICE" --seed 0 \
    >"$WORK/ddp_summary.json" 2>>"$log")
  rc=$?
  cat "$WORK/ddp_summary.json" >>"$log"
  python3 - "$WORK/ddp_summary.json" "$run" "$rc" <<'EOF' 2>&1 | tee -a "$log"
import json, pathlib, sys
summary_path, run, rc = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
try:
    summary = json.loads(summary_path.read_text())
except ValueError:
    summary = {}
lines = (run / "train_log.jsonl").read_text().splitlines() if (run / "train_log.jsonl").is_file() else []
steps = [json.loads(line)["step"] for line in lines]
checks = {
    "exit code 0": rc == 0,
    "2 processes": summary.get("world_size") == 2,
    "ranks hold identical weights": summary.get("ranks_agree") is True,
    "rank 0 alone wrote the log (no duplicate lines)": bool(steps) and len(steps) == len(set(steps)),
    "checkpoint written, no temporary files left": (run / "last.pt").is_file() and not list(run.glob(".*.tmp")),
}
for name, ok in checks.items():
    print(f"  {'ok  ' if ok else 'FAIL'} {name}")
print(f"DDP smoke test {'passed' if all(checks.values()) else 'FAILED'}: {summary.get('steps')} steps, "
      f"{summary.get('device')}, scan {summary.get('scan_impl')}")
sys.exit(0 if all(checks.values()) else 1)
EOF
  local ok=$?
  echo "($((SECONDS - t0)) s)" | tee -a "$log"
  return $ok
}

train_run() {
  # --resume DIR/last.pt when given a checkpoint; the rest of the options are the recipe.
  local run=$1 seconds=$2; shift 2
  # timeout: a hung run still leaves time to export its last checkpoint and evaluate it
  (cd "$PKG" && timeout -k 10 $((seconds + 120)) "${CLI[@]}" train --data "$DATA_DIR" --out "$run" --preset edge \
    --crop "$CROP" --batch "$BATCH" --repeats 40 --epochs 100000 --time-limit "$seconds" \
    --lr "$LR" --schedule cosine --warmup-steps "$WARMUP" --grad-clip 1.0 --drop-path 0.05 --loss "$LOSS" \
    --amp auto --device "$DEVICE" --seed 0 --val-fraction 0.1 $VAL --val-interval 60 --log-every 200 \
    --export "$OUT/edge.pt" "$@" ${TRAIN_ARGS:-} >"$WORK/train_summary.json" 2>>"$OUT/train.log")
}

main_run() {
  local log=$OUT/train.log t0=$SECONDS rc
  [ "$DEVICE" = cuda ] && export CUDA_VISIBLE_DEVICES=$TRAIN_GPU
  echo "== main run: edge on $(basename "$DATA_DIR"), ${TRAIN_SECONDS} s, crop $CROP, batch $BATCH, lr $LR," \
    "warm-up $WARMUP, loss $LOSS, from ${INIT##*/}, device $DEVICE${CUDA_VISIBLE_DEVICES:+ (GPU $TRAIN_GPU)}" \
    "($(date -u +%H:%M:%S))" | tee "$log"
  train_run "$WORK/run" "$TRAIN_SECONDS" "${INIT_ARGS[@]}" --cuda-graph
  rc=$?
  if [ $rc -ne 0 ]; then
    # A crash (not a failed capture, which the trainer survives): go on without the CUDA graph, from
    # the last checkpoint if there is one, for the time that is left.
    local left=$((TRAIN_SECONDS - (SECONDS - t0) - 20))
    echo "== the run stopped (exit $rc); $left s left" | tee -a "$log"
    if [ $left -ge 60 ]; then
      if [ -f "$WORK/run/last.pt" ]; then
        echo "== resuming from $WORK/run/last.pt without --cuda-graph" | tee -a "$log"
        train_run "$WORK/run" "$TRAIN_SECONDS" --resume "$WORK/run/last.pt" --no-cuda-graph
      else
        echo "== starting again without --cuda-graph for $left s" | tee -a "$log"
        train_run "$WORK/run_eager" "$left" "${INIT_ARGS[@]}" --no-cuda-graph
      fi
      rc=$?
    fi
  fi
  if [ ! -f "$OUT/edge.pt" ]; then  # stopped before its own export: export the last checkpoint
    local last
    last=$(ls -t "$WORK"/run*/last.pt 2>/dev/null | head -1)
    if [ -n "$last" ]; then
      echo "== exporting $last" | tee -a "$log"
      (cd "$PKG" && python3 -c 'import sys; from fusion_edge.train import export_weights; export_weights(*sys.argv[1:])' \
        "$last" "$OUT/edge.pt" >>"$log" 2>&1)
    fi
  fi
  echo "== summary (exit $rc, $((SECONDS - t0)) s)" >>"$log"
  cat "$WORK/train_summary.json" >>"$log"
  return $rc
}

tno_eval() {
  # The new weights, the INIT weights (fused first, scored as a folder) and the baselines in one table.
  local log=$OUT/train.log t0=$SECONDS rc=0 dev=$DEVICE before="$WORK/edge, starting weights"
  echo "== TNO eval ($(date -u +%H:%M:%S))" >>"$log"
  [ -f "$OUT/edge.pt" ] || { echo "no $OUT/edge.pt to evaluate" | tee -a "$log"; return 1; }
  local compare=()
  if [ "$INIT" != none ]; then
    (cd "$PKG" && "${CLI[@]}" eval --ir "$TNO_DIR/ir" --vis "$TNO_DIR/vis" --model "$INIT" --preset edge \
      --device "$dev" --metrics EN -o "$WORK/eval_init" >>"$log" 2>&1) \
      && rm -rf "$before" && mv "$WORK/eval_init/fused" "$before" && compare=(--fused "$before")
  fi
  (cd "$PKG" && "${CLI[@]}" eval --ir "$TNO_DIR/ir" --vis "$TNO_DIR/vis" --model "$OUT/edge.pt" --preset edge \
    --model-label "edge, this run" --device "$dev" "${compare[@]}" --baselines -o "$WORK/eval" >>"$log" 2>&1) || rc=$?
  if [ -f "$WORK/eval/metrics.md" ]; then
    {
      echo "# tno21: edge weights of this run beside the weights it started from and the baselines"
      echo
      echo "Row \`edge, this run\`: edge.pt of this run (train.log); row \`${before##*/}\`: ${INIT##*/}, the"
      echo "weights it was fine-tuned from (fused with the same command)."
      echo "The paper's FusionMamba row for TNO: VIF 0.7717, SCD 1.8314, Qabf 0.5468, MS-SSIM 0.9331, FMI 0.8858."
      echo
      cat "$WORK/eval/metrics.md"
    } >"$OUT/tno21_eval.md"
  fi
  echo "(eval $((SECONDS - t0)) s, exit $rc)" >>"$log"
  return $rc
}

report() {
  python3 - "$WORK/train_summary.json" "$OUT/tno21_eval.md" <<'EOF'
import json, pathlib, sys
summary_path, table = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
try:
    s = json.loads(summary_path.read_text())
    print(f"main run: {s['steps']} steps in {s['elapsed_s']} s ({s['steps_per_s']} steps/s), {s['device']}, "
          f"scan {s['scan_impl']}, CUDA graph {s['cuda_graph']}, train loss {s['train_loss']:.4f}")
    print("  validation: " + " ".join(f"{k} {v:.4f}" for k, v in s.get("val", {}).items()))
except (ValueError, KeyError, OSError) as exc:
    print(f"main run: no summary ({exc})")
if table.is_file():
    lines = table.read_text().splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    rows = [line for line in lines[first:] if line.startswith("|")]
    rows = rows[: next((i for i, line in enumerate(lines[first:]) if not line.startswith("|")), len(rows))]
    head = [c.strip() for c in rows[0].strip("|").split("|")] if rows else []
    keep = [i for i, name in enumerate(head) if name in ("method", "Qabf", "VIF", "SCD", "MS-SSIM")]
    for row in rows[:1] + rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == len(head):
            print("  " + " | ".join(cells[i] for i in keep))
EOF
  echo "files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
}

status=0
if [ "$PHASE" = ddp ] || [ "$PHASE" = all ]; then
  ddp_smoke || status=1
fi
if [ "$PHASE" = train ] || [ "$PHASE" = all ]; then
  main_run || status=1
  tno_eval || status=1
  report
fi
exit $status
