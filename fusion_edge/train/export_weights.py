"""Turn a training checkpoint into the weights that ship: a plain state_dict plus a JSON record.

The state_dict loads with ``fusion_edge.load_checkpoint`` (and with the reference code's
``load_state_dict``); the JSON beside it says how the weights were trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fusion_edge.train.checkpointing import atomic_save, atomic_write_text, load_training_checkpoint

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def export_weights(
    checkpoint: str | Path,
    out_path: str | Path,
    *,
    dtype: str = "fp16",
    keep_base_mask: bool = False,
    command: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out_path`` (state_dict, optimizer state dropped) and ``out_path`` with ``.json``.

    ``dtype`` fp16 halves the file; loaders cast back to fp32, and the record says how far the
    rounding moves the clamped output on a test pair. The LDCs' ``base_mask`` tensors (frozen,
    all ones, a quarter of the values) are left out unless ``keep_base_mask``;
    ``fusion_edge.load_checkpoint`` restores them (the reference code needs ``strict=False``).
    ``command``, the training command line, is recorded with the settings. Returns the JSON record.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    ckpt = load_training_checkpoint(checkpoint)
    cast = DTYPES[dtype]
    state = {k: v.to(cast) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    omitted = []
    if not keep_base_mask:
        for key in [k for k in state if k.endswith("base_mask")]:
            if not bool((ckpt["model"][key] == 1).all()):
                raise ValueError(f"{key} is not all ones; export with keep_base_mask=True")
            del state[key]
            omitted.append(key)
    out_path = Path(out_path)
    atomic_save(state, out_path)
    cfg = ckpt.get("config", {})
    history = ckpt.get("history", [])
    final = history[-1] if history else {}
    record: dict[str, Any] = {
        "preset": cfg.get("preset"),
        "model_config": ckpt.get("model_config"),
        "dtype": dtype,
        "file": out_path.name,
        "bytes": out_path.stat().st_size,
        "omitted": "base_mask (all ones; fusion_edge.load_checkpoint restores them)" if omitted else None,
        "training": {
            "data": Path(cfg.get("data", "")).name,
            "steps": ckpt["step"],
            "epochs_completed": ckpt["epoch"],
            "elapsed_s": round(float(ckpt.get("elapsed", 0.0)), 1),
            **{k: cfg.get(k) for k in ("crop", "batch", "repeats", "loss", "loss_weights", "quality_weights", "lr",
                                       "schedule", "warmup_steps", "min_lr_ratio", "amp", "grad_clip", "drop_path_rate",
                                       "seed", "val_fraction", "val_max_side", "scan_impl", "time_limit",
                                       "cuda_graph")},
            "init": Path(cfg["init_weights"]).name if cfg.get("init_weights") else None,
            **({"command": command} if command else {}),
        },
        "environment": ckpt.get("environment", {}),
        "final": {k: v for k, v in final.items() if k.startswith("val_") or k in ("train_loss", "step", "epoch")},
    }
    if dtype != "fp32":
        record["rounding"] = rounding_error(ckpt["model"], state)
    if extra:
        record.update(extra)
    atomic_write_text(json.dumps(record, indent=2) + "\n", out_path.with_suffix(".json"))
    return record


@torch.no_grad()
def rounding_error(full: dict[str, torch.Tensor], rounded: dict[str, torch.Tensor], size: int = 128) -> dict[str, Any]:
    """Max and mean |difference| of the clamped outputs of the two weight sets on a smooth random pair."""
    from fusion_edge.models.checkpoint import load_checkpoint

    gen = torch.Generator().manual_seed(0)
    pair = [torch.nn.functional.avg_pool2d(torch.rand(1, 1, size + 6, size + 6, generator=gen), 7, stride=1)
            for _ in range(2)]
    vis, ir = ((x - x.min()) / (x.max() - x.min()) for x in pair)
    outs = [load_checkpoint(dict(s)).eval()(vis, ir).clamp(0, 1) for s in (full, rounded)]
    diff = (outs[0] - outs[1]).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "input": f"smooth random {size}x{size} pair, output clamped to [0, 1]"}
