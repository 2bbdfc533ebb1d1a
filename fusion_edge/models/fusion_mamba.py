"""FusionMamba: the infrared/visible fusion U-Net of the public reference, layer for layer.

Key names, shapes and arithmetic follow the reference implementation (see docs), so its
checkpoints load with ``strict=True`` and give its outputs. Inputs of any size are padded
(reflect) to a multiple of 32 and the output cropped back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fusion_edge.models.cross_stream import PRIOR_STREAM, SIDE_SCHEDULE, SideWork, check_schedule
from fusion_edge.models.dffm import DFFMBlock
from fusion_edge.models.dvss import DecoderStage, EncoderStage
from fusion_edge.models.graph_state import is_exporting, is_tracing
from fusion_edge.models.ldc import LDC
from fusion_edge.models.patch import FinalPatchExpand2D, PatchEmbed2D
from fusion_edge.models.two_scale import TwoScaleFusion

SIZE_MULTIPLE = 32


def _widths(dims: int | Sequence[int]) -> list[int]:
    if isinstance(dims, int):
        return [dims * 2**i for i in range(4)]
    return list(dims)


def _linspace(end: float, count: int) -> list[float]:
    """torch.linspace(0, end, count) as floats (works while building on the meta device)."""
    return [end * i / (count - 1) if count > 1 else 0.0 for i in range(count)]


# State_dict key of the global residual scale, present only when it is not the reference's 2: a
# plain state_dict then still says how to rebuild the model, and reference weights stay unchanged.
RESIDUAL_KEY = "global_residual_scale"
# State_dict key present when the global residual is max(x1, x2) (``residual="max"``) instead of a sum.
RESIDUAL_MAX_KEY = "global_residual_max"
# State_dict key present when the global residual is the two-scale prior (``residual="twoscale"``).
RESIDUAL_TWOSCALE_KEY = "global_residual_twoscale"
RESIDUALS = ("sum", "max", "twoscale")
# The residuals that are a fixed fusion of the inputs, by the state_dict key that marks them.
PRIOR_RESIDUAL_KEYS = {"max": RESIDUAL_MAX_KEY, "twoscale": RESIDUAL_TWOSCALE_KEY}


class FusionMamba(nn.Module):
    """The reference ``VSSM_Fusion``. ``model(x1, x2)``: x1 = visible (grey), x2 = infrared.

    Both are (B, in_chans, H, W) floats in [0, 1]; returns the raw (unclamped) fused image
    (B, 1, H, W) = head + residual_scale * (x1 + x2), or head + max(x1, x2) with ``residual="max"``,
    or head + the two-scale prior of ``fusion_edge.models.two_scale`` with ``residual="twoscale"``
    (ours: the head then starts from a strong fusion on its own and only has to add what it misses).
    """

    def __init__(
        self,
        patch_size: int = 4,
        in_chans: int = 1,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 2, 9, 2),
        depths_decoder: Sequence[int] = (2, 9, 2, 2),
        dims: int | Sequence[int] = (96, 192, 384, 768),
        dims_decoder: int | Sequence[int] | None = None,
        d_state: int = 16,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
        residual_scale: float = 2.0,
        residual: str = "sum",
        legacy_cross_ffn: bool = False,
        **kwargs,
    ) -> None:
        super().__init__()
        dims = _widths(dims)
        dims_decoder = _widths(dims_decoder) if dims_decoder is not None else dims[::-1]
        if len(dims) != 4 or len(depths) != 4 or len(depths_decoder) != 4:
            raise ValueError("FusionMamba has 4 stages: dims, depths and depths_decoder need 4 entries each")
        if dims_decoder != dims[::-1] or any(b != 2 * a for a, b in zip(dims, dims[1:])):
            raise ValueError(f"dims must double per stage and dims_decoder mirror them, got {dims} / {dims_decoder}")
        if dims[0] % 4:
            raise ValueError(f"dims[0] must be a multiple of 4 (final 4x expand), got {dims[0]}")
        if residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {', '.join(RESIDUALS)}, got {residual!r}")
        self.config = dict(
            patch_size=patch_size, in_chans=in_chans, depths=list(depths), depths_decoder=list(depths_decoder),
            dims=dims, d_state=d_state, drop_path_rate=drop_path_rate, residual_scale=residual_scale,
            legacy_cross_ffn=legacy_cross_ffn,
        )
        if residual != "sum":  # configs of sum-residual models stay as they were
            self.config["residual"] = residual
        self.residual = residual
        self.in_chans = in_chans
        self.residual_scale = float(residual_scale)
        self.prior = TwoScaleFusion() if residual == "twoscale" else None
        if residual in PRIOR_RESIDUAL_KEYS:
            self.register_buffer(PRIOR_RESIDUAL_KEYS[residual], torch.tensor(1.0))
        elif self.residual_scale != 2.0:
            self.register_buffer(RESIDUAL_KEY, torch.tensor(self.residual_scale))
        self.check_inputs = True
        # CUDA inputs, not while a graph is traced: the cross-modal blocks (and a prior) run on side streams
        # (fusion_edge/models/cross_stream.py). Off ("inline") by default; the output is the same.
        self.cross_schedule = "inline"
        self.side_priority = 0  # CUDA priority of the side streams (lower is more urgent)
        self.prior_on_side_stream = True  # under a side schedule, a two-scale prior on a stream of its own

        self.patch_embed1 = PatchEmbed2D(patch_size, in_chans, dims[0], norm=patch_norm)
        self.patch_embed2 = PatchEmbed2D(patch_size, in_chans, dims[0], norm=patch_norm)
        self.pos_drop = nn.Dropout(drop_rate)

        enc_rates = _linspace(drop_path_rate, sum(depths))
        dec_rates = _linspace(drop_path_rate, sum(depths_decoder))[::-1]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            rates = enc_rates[sum(depths[:i]) : sum(depths[: i + 1])]
            self.layers.append(EncoderStage(dims[i], depth, rates, downsample=i < 3))
        self.layers_up = nn.ModuleList()
        for i, depth in enumerate(depths_decoder):
            rates = dec_rates[sum(depths_decoder[:i]) : sum(depths_decoder[: i + 1])]
            self.layers_up.append(DecoderStage(dims_decoder[i], depth, rates, upsample=i > 0))
        self.Cross_block: nn.ModuleList = nn.ModuleList(
            DFFMBlock(dims[i], d_state=d_state, legacy_ffn=legacy_cross_ffn) for i in range(4)
        )
        self.final_up = FinalPatchExpand2D(dims_decoder[-1])
        self.final_conv = nn.Conv2d(dims_decoder[-1] // 4, 1, kernel_size=1)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ checks
    def validate(self, x1: torch.Tensor, x2: torch.Tensor) -> None:
        """Raise ValueError naming what is wrong with a pair of inputs."""
        for name, x in (("x1 (visible)", x1), ("x2 (infrared)", x2)):
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() != 4:
                raise ValueError(f"{name} must be (B, C, H, W), got shape {tuple(x.shape)}")
            if x.shape[1] != self.in_chans:
                raise ValueError(f"{name} has {x.shape[1]} channels; this model takes in_chans={self.in_chans}")
            if not x.is_floating_point():
                raise ValueError(f"{name} must be floating point (scaled to [0, 1]), got {x.dtype}")
        if x1.shape != x2.shape:
            raise ValueError(f"visible and infrared shapes differ: {tuple(x1.shape)} vs {tuple(x2.shape)}")
        for name, x in (("x1 (visible)", x1), ("x2 (infrared)", x2)):
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name} contains NaN or Inf values")

    # ----------------------------------------------------------------- forward
    @property
    def cross_on_side_stream(self) -> bool:
        """True when the cross-modal blocks run on side streams (the schedule ``SIDE_SCHEDULE``)."""
        return self.cross_schedule != "inline"

    @cross_on_side_stream.setter
    def cross_on_side_stream(self, on: bool) -> None:
        self.cross_schedule = SIDE_SCHEDULE if on else "inline"

    def side_work(self, x: torch.Tensor) -> SideWork | None:
        """Side streams for one forward: CUDA inputs, a side schedule, and no graph being traced."""
        if check_schedule(self.cross_schedule) == "inline" or not x.is_cuda or is_tracing():
            return None
        return SideWork(x.device, self.side_priority)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if self.check_inputs and not is_exporting():
            self.validate(x1, x2)
        work = self.side_work(x1)
        if work is not None and self.prior is not None and self.prior_on_side_stream:
            work.launch("prior", PRIOR_STREAM, self.prior, x1, x2)  # needs nothing but the pair
        h, w = x1.shape[-2:]
        pad_h, pad_w = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
        if not (pad_h or pad_w):
            return self.add_residual(self.head_padded(x1, x2, work), x1, x2, work)
        head = self.head_padded(pad_to_multiple(x1, pad_h, pad_w), pad_to_multiple(x2, pad_h, pad_w), work)
        # the residual of the unpadded pair: a prior's blurs would otherwise see the padding
        return self.add_residual(head[..., :h, :w], x1, x2, work)

    def forward_padded(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The reference forward; H and W must be multiples of 32."""
        return self.add_residual(self.head_padded(x1, x2), x1, x2)

    def head_padded(self, x1: torch.Tensor, x2: torch.Tensor, work: SideWork | None = None) -> torch.Tensor:
        """The network's output before the global residual; H and W must be multiples of 32. ``work``:
        the side streams of this forward (default: :meth:`side_work`'s)."""
        work = work if work is not None else self.side_work(x1)
        s1, s2, crossed = self._cross_blocks(x1, x2, work)
        y = self.layers_up[0](s1[4] + s2[4])
        for j in range(1, 4):
            y = self.layers_up[j](y + crossed(4 - j))
        y = self.final_up(y).permute(0, 3, 1, 2)
        return self.final_conv(y)

    def _cross_blocks(self, x1: torch.Tensor, x2: torch.Tensor, work: SideWork | None,
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor], Callable[[int], torch.Tensor]]:
        """Encode the pair and schedule the cross-modal blocks of stages 1-3 (fusion_edge/models/cross_stream.py):
        the features of both modalities, and stage -> that block's output."""
        if work is None:
            s1, s2 = self.encode(x1, x2)
            return s1, s2, lambda stage: self.Cross_block[stage](s1[stage], s2[stage])
        if self.cross_schedule == "after-encoder":
            s1, s2 = self.encode(x1, x2)
            for stage in (3, 2, 1):
                work.launch(("cross", stage), 0, self.Cross_block[stage], s1[stage], s2[stage])
        else:  # early: each block on its own stream once its encoder stage is done

            def ready(stage: int, f1: torch.Tensor, f2: torch.Tensor) -> None:
                if 1 <= stage <= 3:
                    work.launch(("cross", stage), stage - 1, self.Cross_block[stage], f1, f2)

            s1, s2 = self.encode(x1, x2, on_stage=ready)
        return s1, s2, lambda stage: work.take(("cross", stage))

    def add_residual(self, y: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor,
                     work: SideWork | None = None) -> torch.Tensor:
        """The head ``y`` plus the global residual: residual_scale * (x1 + x2), max(x1, x2) or the prior
        (taken from ``work`` when a side stream computed it)."""
        if self.residual == "max":
            return y + torch.maximum(x1, x2)
        if self.prior is not None:
            return y + (work.take("prior") if work is not None and "prior" in work else self.prior(x1, x2))
        if self.residual_scale == 2.0:
            return y + x1 + x2 + x1 + x2  # the reference's order of additions
        if self.residual_scale == 1.0:
            return y + x1 + x2
        return y + self.residual_scale * (x1 + x2)

    def encode(self, x1: torch.Tensor, x2: torch.Tensor,
               on_stage: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Features of each modality after the patch embedding and after every encoder stage (5 each);
        ``on_stage(i, s1[i], s2[i])`` is called as soon as stage i's features are queued."""
        batch = x1.shape[0]
        # One encoder is shared by both modalities: run it once on both, stacked on the batch axis
        # (every encoder op is per sample), which halves the kernel launches of the encoder.
        x = torch.cat([self.pos_drop(self.patch_embed1(x1)), self.pos_drop(self.patch_embed2(x2))])
        s1, s2 = [x[:batch]], [x[batch:]]
        for layer in self.layers:
            x = layer(x)
            s1.append(x[:batch])
            s2.append(x[batch:])
            if on_stage is not None:
                on_stage(len(s1) - 1, s1[-1], s2[-1])
        return s1, s2

    # --------------------------------------------------------------- inference
    def for_inference(self, fold_ldc: bool = True) -> FusionMamba:
        """A copy in eval mode with every LDC folded into one Conv2d and dead weights removed.

        Removed (their results never reach the output): ``Cross_block.0``, every DFEM ``lastconv``
        and the z half of each CMFM ``in_proj2``. The output is unchanged up to rounding.
        ``fold_ldc=False`` keeps the LDCs as they are (for graphs that run LDC as its own op).
        """
        model = copy.deepcopy(self).eval()
        model.Cross_block[0] = nn.Identity()
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if fold_ldc and isinstance(child, LDC):
                    setattr(module, name, child.fold())
            if hasattr(module, "Diff_enhance"):
                module.Diff_enhance = None
            if hasattr(module, "drop_dead_weights"):
                module.drop_dead_weights()
        for p in model.parameters():
            p.requires_grad_(False)
        model.inference_ready = True
        return model

    inference_ready = False
    preset: str | None = None


def pad_to_multiple(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad bottom/right; reflect where the image is large enough, else replicate."""
    h, w = x.shape[-2:]
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
