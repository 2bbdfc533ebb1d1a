"""Load FusionMamba checkpoints as users have them: reference state_dicts, wrapped training
checkpoints, DDP/compiled prefixes and older key layouts, inferring the configuration from shapes."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fusion_edge.models.fusion_mamba import PRIOR_RESIDUAL_KEYS, RESIDUAL_KEY, FusionMamba
from fusion_edge.models.packaged import checkpoint_not_found, resolve_checkpoint
from fusion_edge.models.presets import PRESETS, preset_config

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.")
# Key renames of reference revisions before e850369 (2024-10-15), inside the cross blocks.
_LEGACY_RENAMES = (
    (re.compile(r"^(Cross_block\.\d+)\.DFEM\."), r"\1.Cross_layer."),
    (re.compile(r"^(Cross_block\.\d+)\.self_attention_cross_eca\."), r"\1.self_attention_cross_spatial."),
)
_LEGACY_FFN = re.compile(r"^Cross_block\.\d+\.(norm2|mlp)\.")


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a checkpoint object and strip wrapper prefixes."""
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise ValueError(f"checkpoint holds no state_dict (top-level keys: {sorted(obj)[:8]})")
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint is a {type(obj).__name__}, not a state_dict")
    state = dict(obj)
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _is_tensor_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def upgrade_legacy_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool, bool]:
    """Rename pre-e850369 cross-block keys. Returns (state, was_legacy, had_cross_ffn)."""
    legacy = any(p.search(k) for k in state for p, _ in _LEGACY_RENAMES)
    has_ffn = any(_LEGACY_FFN.search(k) for k in state)
    if not legacy and not has_ffn:
        return state, False, False
    upgraded = {}
    for key, value in state.items():
        for pattern, repl in _LEGACY_RENAMES:
            key = pattern.sub(repl, key)
        upgraded[key] = value
    return upgraded, legacy, has_ffn


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Read patch size, widths, depths and d_state off the tensor shapes."""
    try:
        embed = state["patch_embed1.proj.weight"]
    except KeyError:
        raise ValueError("not a FusionMamba checkpoint: 'patch_embed1.proj.weight' is missing") from None

    def depth(prefix: str, stage: int) -> int:
        pat = re.compile(rf"^{prefix}\.{stage}\.blocks\.(\d+)\.")
        found = {int(m.group(1)) for k in state if (m := pat.match(k))}
        return max(found) + 1 if found else 0

    c = embed.shape[0]
    cross_a = re.compile(r"^Cross_block\.\d+\.self_attention_cross\.A_logs$")
    cross = next((v for k, v in state.items() if cross_a.match(k)), None)
    return dict(
        patch_size=embed.shape[-1],
        in_chans=embed.shape[1],
        dims=[c, 2 * c, 4 * c, 8 * c],
        depths=[depth("layers", s) for s in range(4)],
        depths_decoder=[depth("layers_up", s) for s in range(4)],
        d_state=cross.shape[1] if cross is not None else 16,
    )


def matching_preset(config: Mapping[str, Any]) -> str | None:
    for name, preset in PRESETS.items():
        if all(config.get(k) == v for k, v in preset.items()) and config.get("patch_size", 4) == 4:
            return name
    return None


def load_checkpoint(
    source: str | Path | Mapping,
    preset: str | None = None,
    *,
    residual_scale: float | None = None,
    legacy_cross_ffn: bool = False,
    map_location: str | torch.device = "cpu",
) -> FusionMamba:
    """Build the model a checkpoint was trained as and load it strictly.

    ``preset`` checks the checkpoint against a named configuration (error on mismatch);
    without it the configuration is inferred from the tensor shapes. Checkpoints of reference
    revisions before 2024-10-15 (``DFEM``/``self_attention_cross_eca`` keys) are renamed and use
    the residual x1 + x2 of that code; their unused cross-block FFN is dropped unless
    ``legacy_cross_ffn`` (weights of revision 8abd423, which applied it).
    """
    if isinstance(source, Mapping):
        raw = source
    else:
        path = resolve_checkpoint(source)  # a path, or a packaged name such as "edge-sum"
        if not path.is_file():
            raise checkpoint_not_found(path)
        try:
            raw = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # pickle errors, truncated files, non-torch files
            raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    state = extract_state_dict(raw)
    # the shapes cannot tell the residual scale: our models keep it as a buffer when it is not 2
    stored_scale = float(state[RESIDUAL_KEY]) if RESIDUAL_KEY in state else None
    prior = next((name for name, key in PRIOR_RESIDUAL_KEYS.items() if key in state), None)
    state, legacy, has_ffn = upgrade_legacy_keys(state)
    if has_ffn and not legacy_cross_ffn:
        warnings.warn(
            "checkpoint has the old cross-block FFN (norm2/mlp); revisions 96a3065-a5fb38b built but never "
            "applied it, so it is dropped. Pass legacy_cross_ffn=True for weights of revision 8abd423.",
            stacklevel=2,
        )
        state = {k: v for k, v in state.items() if not _LEGACY_FFN.search(k)}
    config = infer_config(state)
    if residual_scale is None:  # (unused by a prior residual, kept as the presets' 1 for the preset check)
        residual_scale = stored_scale if stored_scale is not None else (1.0 if legacy or prior else 2.0)
    config["residual_scale"] = float(residual_scale)
    if prior:
        config["residual"] = prior
    if preset is not None:
        expected = preset_config(preset)
        diffs = [f"{k}: checkpoint {config[k]} vs preset {v}" for k, v in expected.items() if config.get(k) != v]
        if diffs:
            raise ValueError(f"checkpoint does not match preset {preset!r}: " + "; ".join(diffs))
    model = FusionMamba(**config, legacy_cross_ffn=legacy_cross_ffn and has_ffn)
    if "Cross_block.0.ln_1.weight" not in state:
        raise ValueError("checkpoint lacks Cross_block.0; inference-only state_dicts are not loadable here")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model_state = model.state_dict()
    # base_mask is a frozen all-ones tensor in every trained model; tolerate checkpoints that omit it
    for key, value in model_state.items():
        if key.endswith("base_mask") and key not in state:
            state[key] = torch.ones_like(value)
    # the residual buffer describes the model built above (stored, inferred or asked for), never the file
    state.pop(RESIDUAL_KEY, None)
    if RESIDUAL_KEY in model_state:
        state[RESIDUAL_KEY] = model_state[RESIDUAL_KEY].clone()
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"checkpoint tensors do not fit the inferred configuration {config}: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            "checkpoint keys do not fit the model: "
            f"missing {result.missing_keys[:5]}{'...' if len(result.missing_keys) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
        )
    model.preset = matching_preset(config)
    return model
