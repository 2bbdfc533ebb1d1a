#!/usr/bin/env bash
# Trains the default weights that ship as fusion_edge/weights/edge.pt (+ edge.json): the `edge`
# preset on the 221 RoadScene pairs, on one GPU, for a fixed wall-clock budget.
#   benchmarks/train_roadscene.sh DATA_DIR OUT_DIR [extra `fusion-edge train` options, which win]
# DATA_DIR holds ir/ and vis/ (RoadScene as in docs/training.md). Writes OUT_DIR/edge.pt, edge.json,
# train.log, train_log.jsonl and config.json; the full training checkpoint stays in OUT_DIR/run/.
#   TIME_LIMIT=240   seconds of training (after data loading and graph capture)
set -euo pipefail
DATA=$(realpath "${1:?usage: $0 DATA_DIR OUT_DIR}")
OUT_DIR=$(realpath -m "${2:?usage: $0 DATA_DIR OUT_DIR}")
RUN_DIR=$(realpath -m "${RUN_DIR:-$OUT_DIR/run}")
REPO=$(realpath "$(dirname "$0")/..")

# Import the checkout as the installed package is laid out (kernels/ -> fusion_edge.kernels, ...).
PKG=$(mktemp -d)
mkdir -p "$PKG/fusion_edge"
for f in "$REPO"/fusion_edge/*; do ln -s "$f" "$PKG/fusion_edge/"; done
for sub in kernels runtime export; do [ -d "$REPO/$sub" ] && ln -s "$REPO/$sub" "$PKG/fusion_edge/$sub"; done
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR" "$RUN_DIR"
cd "$PKG"  # not the checkout: `python -m` puts the working directory first on sys.path

python3 -m fusion_edge.cli train --data "$DATA" --out "$RUN_DIR" --preset edge \
  --crop 256 --batch 16 --repeats 20 --epochs 1000 --time-limit "${TIME_LIMIT:-240}" \
  --lr 5e-4 --schedule cosine --warmup-steps 50 --grad-clip 1.0 --drop-path 0.05 --head-bias-init data \
  --loss reference --amp bf16 --scan-impl chunked \
  --seed 0 --val-fraction 0.1 --val-max-side 256 --val-every 2 --workers 6 --log-every 50 \
  --export "$OUT_DIR/edge.pt" "${@:3}" 2>&1 | tee "$OUT_DIR/train.log"
cp "$RUN_DIR/train_log.jsonl" "$RUN_DIR/config.json" "$OUT_DIR/"
