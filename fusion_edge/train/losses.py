"""The fusion loss of the reference training script, term by term, and the paper's weighting.

L = w_ssim * L_ssim + w_int * L_int + w_grad * L_grad + w_quality * L_quality, computed in fp32 on the
clamped output (each named loss has its weights; ``weights`` replaces them):

* L_int  = MSE(max(I_v, I_r), F)
* L_grad = L1(max(|grad I_v|, |grad I_r|), |grad F|), |grad x| = |Sobel_x * x| + |Sobel_y * x|
* L_ssim = 0.5 (1 - MS-SSIM(F, I_v)) + 0.5 (1 - MS-SSIM(F, I_r))

``signed-grad`` (ours) replaces L_grad by a term on the signed Sobel responses: per direction and pixel,
the target is the response of the source whose response is stronger, so the fused image keeps the
direction of each edge as well as its strength (what Qabf scores); the magnitude target alone is met
just as well by an edge of the opposite sign or by texture from both sources at once.

* L_grad_signed = L1(sel(S_x I_v, S_x I_r), S_x F) + L1(sel(S_y I_v, S_y I_r), S_y F),
  sel(a, b) = a where |a| >= |b| else b

``quality`` (ours) adds L_quality = 1 - (Qabf + VIF / 2 + SCD / 2) / 3 (``quality_loss``, whose three
weights ``quality_weights`` replaces): the three
evaluation metrics themselves, differentiable, on top of the signed-gradient loss, whose terms keep
the image close to the sources where the metrics are indifferent.

MS-SSIM is the reference repository's ``pytorch_msssim.msssim(normalize=True)`` with its quirks kept
(valid convolution, window shrunk to the image, range read off the first argument at every level,
the last level's SSIM multiplied into each of the four cs factors), because the published weights
were trained against exactly this function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fusion_edge.ops.sobel import sobel_kernels
from fusion_edge.train.quality_loss import QUALITY_WEIGHTS, check_quality_weights, checked_weights, quality_loss

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# The smallest crop for which all five MS-SSIM levels keep at least one pixel.
MIN_MSSSIM_SIZE = 16

# (w_ssim, w_int, w_grad, w_quality)
LOSS_WEIGHTS: dict[str, tuple[float, float, float, float]] = {
    # train.py / loss.py of the reference: 10 * L_ssim + 10 * L_int + 1 * L_grad.
    "reference": (10.0, 10.0, 1.0, 0.0),
    # The paper's a1 * L_int + a2 * L_text + a3 * L_ssim with (a1, a2, a3) = (100, 10, 1).
    "paper": (1.0, 100.0, 10.0, 0.0),
    # Ours: the reference's terms with the signed gradient term, weighted 5.
    "signed-grad": (10.0, 10.0, 5.0, 0.0),
    # Ours: signed-grad plus the differentiable evaluation metrics.
    "quality": (10.0, 10.0, 5.0, 10.0),
}
# Losses whose gradient term compares signed Sobel responses instead of magnitudes.
SIGNED_GRADIENT = frozenset({"signed-grad", "quality"})
TERMS = ("ssim", "int", "grad", "quality")


def check_loss_weights(weights: Sequence[float], loss: str = "reference") -> tuple[float, float, float, float]:
    """(w_ssim, w_int, w_grad, w_quality) replacing ``loss``'s own weights (the paper's study varies
    them); three numbers keep that loss's quality weight."""
    values = checked_weights(weights, (3, 4), "loss weights must be three or four finite numbers >= 0 (SSIM, "
                             "intensity, gradient[, quality])")
    if len(values) == 3:
        values = (*values, LOSS_WEIGHTS.get(loss, LOSS_WEIGHTS["reference"])[3])
    return values


def clamp_unit(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] as the reference does (torch.where: zero gradient outside the range)."""
    x = torch.where(x > 1, torch.ones_like(x), x)
    return torch.where(x < 0, torch.zeros_like(x), x)


# Constants per (size or name, device, dtype), made once: no host-to-device copy inside a step,
# which also keeps the loss capturable in a CUDA graph.
_CONSTANTS: dict[tuple, torch.Tensor] = {}


def gaussian_window(size: int, sigma: float = 1.5, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 1, size, size) normalised Gaussian centred at size // 2 (off-centre for even sizes, as the repo)."""
    key = ("window", size, sigma, str(device), dtype)
    if key not in _CONSTANTS:
        g = torch.tensor([math.exp(-((x - size // 2) ** 2) / (2 * sigma**2)) for x in range(size)], dtype=dtype)
        g = g / g.sum()
        _CONSTANTS[key] = (g[:, None] @ g[None, :]).to(device)[None, None]
    return _CONSTANTS[key]


def _msssim_weights(device, dtype) -> torch.Tensor:
    key = ("msssim", str(device), dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(MSSSIM_WEIGHTS, dtype=dtype).to(device)
    return _CONSTANTS[key]


def _dynamic_range(img: torch.Tensor) -> torch.Tensor:
    """255 or 1 by the maximum, minus -1 or 0 by the minimum (kept on the device: no host sync)."""
    high = 1 + 254 * (img.max() > 128).to(img.dtype)
    low = -(img.min() < -0.5).to(img.dtype)
    return high - low


def ssim_and_cs(img1: torch.Tensor, img2: torch.Tensor, window_size: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term over the whole batch (valid convolution)."""
    _, channels, height, width = img1.shape
    size = min(window_size, height, width)
    window = gaussian_window(size, device=img1.device, dtype=img1.dtype).expand(channels, 1, size, size)
    value_range = _dynamic_range(img1)
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=channels)

    mu1, mu2 = blur(img1), blur(img2)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = blur(img1 * img1) - mu1_sq
    sigma2_sq = blur(img2 * img2) - mu2_sq
    sigma12 = blur(img1 * img2) - mu12
    v1 = 2.0 * sigma12 + c2
    v2 = sigma1_sq + sigma2_sq + c2
    cs = torch.mean(v1 / v2)
    ssim_map = ((2 * mu12 + c1) * v1) / ((mu1_sq + mu2_sq + c1) * v2)
    return ssim_map.mean(), cs


def msssim_reference(img1: torch.Tensor, img2: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """The repository's ``msssim(img1, img2, normalize=True)``, quirk included (see module docstring).

    Result = prod_{i<4} cs_i^{w_i} * ssim_4^{w_4}, with the last factor inside the product, so
    it enters with exponent 4 * w_4. Needs images of at least 16 x 16 (five levels).
    """
    if img1.shape != img2.shape or img1.dim() != 4:
        raise ValueError(f"MS-SSIM needs two (B, C, H, W) tensors of one shape, got {tuple(img1.shape)} "
                         f"and {tuple(img2.shape)}")
    if min(img1.shape[-2:]) < MIN_MSSSIM_SIZE:
        raise ValueError(f"MS-SSIM needs images of at least {MIN_MSSSIM_SIZE}x{MIN_MSSSIM_SIZE} "
                         f"(5 levels of 2x pooling), got {tuple(img1.shape[-2:])}")
    weights = _msssim_weights(img1.device, img1.dtype)
    sims, css = [], []
    for level in range(len(MSSSIM_WEIGHTS)):
        sim, cs = ssim_and_cs(img1, img2, window_size)
        sims.append(sim)
        css.append(cs)
        if level < len(MSSSIM_WEIGHTS) - 1:
            img1, img2 = F.avg_pool2d(img1, 2), F.avg_pool2d(img2, 2)
    mssim = (torch.stack(sims) + 1) / 2
    mcs = (torch.stack(css) + 1) / 2
    factors = mcs[:-1] ** weights[:-1] * mssim[-1] ** weights[-1]
    # A chain of multiplications, not torch.prod: prod's backward looks for zeros with a host
    # sync (nonzero), which breaks the CUDA graph capture of the training step.
    result = factors[0]
    for factor in factors[1:]:
        result = result * factor
    return result


class SobelGradient(nn.Module):
    """|Sobel_x * x| + |Sobel_y * x| with zero padding 1 (cross-correlation), per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", sobel_kernels(), persistent=False)

    def responses(self, x: torch.Tensor) -> torch.Tensor:
        """The signed Sobel_x and Sobel_y responses, (B * C, 2, H, W)."""
        b, c, h, w = x.shape
        return F.conv2d(x.reshape(b * c, 1, h, w), self.kernel.to(x.dtype), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.responses(x)
        return (g[:, 0].abs() + g[:, 1].abs()).reshape(x.shape)


def signed_gradient_loss(gradient: SobelGradient, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor
                         ) -> torch.Tensor:
    """L1 between F's signed Sobel responses and, per direction and pixel, the stronger source's."""
    g_vis, g_ir = gradient.responses(vis), gradient.responses(ir)
    target = torch.where(g_vis.abs() >= g_ir.abs(), g_vis, g_ir)
    return 2 * F.l1_loss(gradient.responses(fused), target)  # the mean over both directions, summed


class FusionLoss(nn.Module):
    """Weighted sum of the SSIM, intensity, gradient (and quality) terms; returns (total, terms).

    ``fused`` is the clamped model output; all three images are (B, 1, H, W) in [0, 1]. The terms
    are computed in fp32 even under autocast (MS-SSIM's divisions are not safe in half precision).
    """

    def __init__(self, weighting: str = "reference", weights: Sequence[float] | None = None,
                 quality_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if weighting not in LOSS_WEIGHTS:
            raise ValueError(f"unknown loss {weighting!r}; choose one of: {', '.join(LOSS_WEIGHTS)}")
        self.weighting = weighting
        chosen = LOSS_WEIGHTS[weighting] if weights is None else check_loss_weights(weights, weighting)
        self.w_ssim, self.w_int, self.w_grad, self.w_quality = chosen
        self.quality_weights = check_quality_weights(QUALITY_WEIGHTS if quality_weights is None else quality_weights)
        self.gradient = SobelGradient()

    def forward(
        self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fused, vis, ir = fused.float(), vis.float(), ir.float()
        with torch.autocast(device_type=fused.device.type, enabled=False):
            l_int = F.mse_loss(torch.maximum(vis, ir), fused)
            if self.weighting in SIGNED_GRADIENT:
                l_grad = signed_gradient_loss(self.gradient, fused, vis, ir)
            else:
                g_target = torch.maximum(self.gradient(vis), self.gradient(ir))
                l_grad = F.l1_loss(g_target, self.gradient(fused))
            l_ssim = 0.5 * (1 - msssim_reference(fused, vis)) + 0.5 * (1 - msssim_reference(fused, ir))
            total = self.w_ssim * l_ssim + self.w_int * l_int + self.w_grad * l_grad
            terms = {"ssim": l_ssim.detach(), "int": l_int.detach(), "grad": l_grad.detach()}
            if self.w_quality > 0:
                l_quality = quality_loss(fused, vis, ir, self.quality_weights)
                total = total + self.w_quality * l_quality
                terms["quality"] = l_quality.detach()
        return total, terms
