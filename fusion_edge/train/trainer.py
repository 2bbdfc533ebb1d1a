"""The training loop: Adam, lr schedule, AMP, clipping, checkpoints with resume, validation, DDP.

Single process on CPU or one GPU, or several GPUs of one host under ``torchrun`` (RANK,
WORLD_SIZE and LOCAL_RANK in the environment): each process trains on its share of the crops
with a per-GPU batch of ``batch``; only rank 0 validates and writes files.

On a GPU a step of the small presets is bound by kernel launches, not arithmetic, so the loop
never waits for the GPU between steps: crops are cut on the device, the learning rate is
written into a device tensor, the loss is summed on the device and read only every
``log_every`` steps, Adam is the fused kernel and gradient clipping needs no host round trip.
With ``cuda_graph`` the whole step is replayed as one CUDA graph (graph_step.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from fusion_edge.train import graph_step
from fusion_edge.train.checkpointing import (
    atomic_save,
    atomic_write_text,
    load_training_checkpoint,
    rng_state,
    set_rng_state,
)
from fusion_edge.train.data import FullImagePairs, RandomCropPairs, find_pairs, split_pairs, to_unit
from fusion_edge.train.losses import LOSS_WEIGHTS, TERMS, FusionLoss, check_loss_weights, clamp_unit
from fusion_edge.train.progress import Progress, log
from fusion_edge.train.quality_loss import VIF_MIN_SIDE, check_quality_weights
from fusion_edge.train.schedule import SCHEDULES, learning_rate
from fusion_edge.train.validation import validate

AMP_MODES = ("auto", "off", "bf16", "fp16")
DATA_PLACES = ("auto", "device", "host")
# data_on="auto" keeps the pairs on the GPU when they take at most this share of its free memory.
DATA_ON_DEVICE_SHARE = 0.25


@dataclass
class TrainConfig:
    """Every knob of a run; saved inside each checkpoint and as ``config.json``."""

    data: str
    out: str = "runs/train"
    preset: str = "edge"
    epochs: int = 10
    batch: int = 8
    crop: int = 128
    repeats: int = 1  # crops drawn from every training pair per epoch
    lr: float = 2e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.0
    loss: str = "reference"
    loss_weights: list[float] | None = None  # (w_ssim, w_int, w_grad[, w_quality]) replacing the loss's own
    quality_weights: list[float] | None = None  # (w_Qabf, w_VIF, w_SCD) inside the quality term
    amp: str = "auto"
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    drop_path_rate: float = 0.1
    head_bias_init: str = "none"  # "data": start the output bias at the mean gap to the intensity target
    init_weights: str | None = None  # start from these weights (fine-tuning); optimizer state starts fresh
    seed: int = 0
    val_fraction: float = 0.1
    val_max_side: int | None = None  # centre-crop validation images to this size (None: whole images)
    val_every: int = 1  # validate every N epochs (and always at the end)
    val_interval: float = 0.0  # seconds: validate and save at most this often (at epoch ends; always at the end)
    data_on: str = "auto"  # where the training pairs live: device (the GPU), host, or auto
    max_steps: int | None = None
    time_limit: float | None = None  # seconds of training; the run then validates, saves and stops
    scan_impl: str = "auto"
    # replay the whole step as one CUDA graph (one GPU, bf16 or fp32); None: wherever that applies
    cuda_graph: bool | None = None
    device: str = "auto"
    log_every: int = 10
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"dims": 8} for tests

    def check(self) -> None:
        positive = {"epochs": self.epochs, "batch": self.batch, "crop": self.crop, "repeats": self.repeats}
        bad = [f"{k}={v}" for k, v in positive.items() if v < 1]
        if bad:
            raise ValueError(f"must be at least 1: {', '.join(bad)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.loss not in LOSS_WEIGHTS:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSS_WEIGHTS)}")
        weights = LOSS_WEIGHTS[self.loss] if self.loss_weights is None else check_loss_weights(self.loss_weights,
                                                                                               self.loss)
        if self.quality_weights is not None:
            check_quality_weights(self.quality_weights)
        if weights[3] > 0:
            small = {k: v for k, v in (("crop", self.crop), ("val_max_side", self.val_max_side))
                     if v is not None and v < VIF_MIN_SIDE}
            if small:
                raise ValueError(f"the quality term (VIF) needs images of at least {VIF_MIN_SIDE} px: "
                                 + ", ".join(f"{k}={v}" for k, v in small.items()))
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp mode {self.amp!r}; choose one of: {', '.join(AMP_MODES)}")
        if self.head_bias_init not in ("none", "data"):
            raise ValueError(f"unknown head_bias_init {self.head_bias_init!r}; choose none or data")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be positive, got {self.time_limit}")
        if self.val_interval < 0:
            raise ValueError(f"val_interval must be at least 0 seconds, got {self.val_interval}")
        if self.data_on not in DATA_PLACES:
            raise ValueError(f"unknown data_on {self.data_on!r}; choose one of: {', '.join(DATA_PLACES)}")


def load_initial_weights(model: torch.nn.Module, path: str) -> bool:
    """Copy a checkpoint's weights (any format ``load_checkpoint`` reads) into ``model``, strictly.

    Weights of a model with another global residual may start one with a prior residual
    (``residual="max"`` or ``"twoscale"``): everything but the output convolution is copied, and that
    is zeroed, so training starts exactly at the prior. Returns whether the head was zeroed.
    """
    from fusion_edge.models.checkpoint import load_checkpoint
    from fusion_edge.models.fusion_mamba import PRIOR_RESIDUAL_KEYS, RESIDUAL_KEY

    source = load_checkpoint(path)
    wanted = getattr(model, "residual", "sum")
    restart_head = wanted in PRIOR_RESIDUAL_KEYS and source.residual != wanted
    if wanted == "sum" and source.residual != "sum":
        raise ValueError(f"--init weights {path} were trained with the global residual {source.residual!r}; "
                         f"pass --residual {source.residual} to fine-tune them")
    if wanted == "sum" and source.residual_scale != model.residual_scale:
        raise ValueError(f"--init weights {path} were trained with the global residual "
                         f"{source.residual_scale:g}*(vis+ir), the model being trained uses "
                         f"{model.residual_scale:g}*(vis+ir); pass --residual-scale {source.residual_scale:g} to "
                         "fine-tune them")
    state = source.state_dict()
    if restart_head:
        for key in (RESIDUAL_KEY, *PRIOR_RESIDUAL_KEYS.values()):
            state.pop(key, None)
        key = PRIOR_RESIDUAL_KEYS[wanted]
        state[key] = model.state_dict()[key]
        state = {k: torch.zeros_like(v) if k.startswith("final_conv.") else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"--init weights {path} do not fit the {type(model).__name__} being trained: {exc}") from exc
    return restart_head


# --------------------------------------------------------------------------- distributed
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group when started by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def pick_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU")
        if info.enabled:
            return torch.device("cuda", info.local_rank)
    return torch.device(name)


def autocast_factory(amp: str, device: torch.device) -> tuple[Any, torch.dtype | None]:
    """(context factory, dtype): bf16 on GPU by default, nothing on CPU. The factory takes
    torch.autocast's keywords (``cache_enabled=False`` inside a CUDA graph)."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return (lambda **_: contextlib.nullcontext()), None
    if device.type != "cuda":
        raise ValueError(f"mixed precision ({amp}) needs a CUDA device; use --amp off on {device.type}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda **kw: torch.autocast("cuda", dtype=dtype, **kw)), dtype


def resolved_scan_impl(device: torch.device) -> str:
    """The selective-scan implementation this run's model will use, with the reason when our CUDA
    kernel is not it on a GPU (so a slow run says why)."""
    from fusion_edge.ops.selective_scan import get_default_impl, resolve_impl

    probe = torch.empty(1, 1, 1, device=device)
    name = resolve_impl(probe)
    if device.type == "cuda" and name != "cuda" and get_default_impl() == "auto":
        try:
            from fusion_edge.ops.selective_scan_cuda import cuda_unavailable_reason

            why = cuda_unavailable_reason(probe)
        except Exception as exc:  # the reason is informative only
            why = f"{type(exc).__name__}: {exc}"
        return f"{name} (cuda unavailable: {why})"
    return name


def output_bias_for(images: list, residual_scale: float, residual: str = "sum") -> float:
    """Mean of max(vis, ir) - residual_scale * (vis + ir) over the training pairs (0 for a prior residual).

    The network adds residual_scale * (vis + ir) to its head; on bright scenes that sum starts far
    above 1, the clamp before the loss zeroes the gradient of nearly every pixel, and Adam moves
    the head's bias by about lr per step. Starting the bias at this gap puts the output in range
    from the first step (same architecture and loss; only the initial value differs).
    """
    if residual != "sum":
        return 0.0
    gaps = []
    for vis, ir in images:
        v, i = vis.astype("float64") / 255.0, ir.astype("float64") / 255.0
        gaps.append(float((np.maximum(v, i) - residual_scale * (v + i)).mean()))
    return float(np.mean(gaps))


def gradient_free_parameters(model: torch.nn.Module, device: torch.device) -> list[str]:
    """Names of parameters that no loss can reach (e.g. ``Cross_block.0``, whose output the
    forward never reads). Found by one backward pass on a small input; freezing them lets
    DistributedDataParallel run without ``find_unused_parameters``."""
    state = torch.get_rng_state()
    x = torch.rand(1, model.in_chans, 32, 32, device=device)
    model.zero_grad(set_to_none=True)
    model(x, x.flip(-1)).square().mean().backward()
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    torch.set_rng_state(state)
    return names


# --------------------------------------------------------------------------- the run
class Trainer:
    def __init__(self, config: TrainConfig, resume: str | None = None) -> None:
        config.check()
        self.config = config
        self.resume_path = resume
        self.dist = init_distributed("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
        self.device = pick_device(config.device, self.dist)
        self.is_main = self.dist.is_main
        self.out = Path(config.out)
        self.autocast, self.amp_dtype = autocast_factory(config.amp, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop and batch: pick each conv's fastest algorithm once
            torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts (loss) on tensor cores

    # ----------------------------------------------------------------- setup
    def _seed(self, seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)

    def _data_device(self, nbytes: int) -> torch.device:
        """Where the training pairs live: on the GPU unless asked otherwise or too large for it."""
        place = self.config.data_on
        if self.device.type != "cuda" or place == "host":
            return torch.device("cpu")
        if place == "device":
            return self.device
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.device if nbytes <= DATA_ON_DEVICE_SHARE * free else torch.device("cpu")

    def _build(self) -> None:
        cfg = self.config
        if cfg.scan_impl != "auto":
            from fusion_edge.ops import set_default_impl

            set_default_impl(cfg.scan_impl)  # ValueError naming the known implementations
        resume = self._load_resume(self.resume_path) if self.resume_path else None
        self._seed(cfg.seed)
        pairs = find_pairs(cfg.data)
        if len(pairs) < 2 and cfg.val_fraction > 0:
            raise ValueError(f"{cfg.data} has {len(pairs)} pair; validation needs at least 2 (or val_fraction 0)")
        self.train_pairs, self.val_pairs = split_pairs(pairs, cfg.val_fraction, seed=cfg.seed)
        self.train_set = RandomCropPairs(self.train_pairs, cfg.crop, repeats=cfg.repeats)
        self.train_set.to(self._data_device(self.train_set.nbytes))
        self.val_set = FullImagePairs(self.val_pairs, cfg.val_max_side) if self.val_pairs else None

        from fusion_edge.models import create_model

        model = create_model(cfg.preset, drop_path_rate=cfg.drop_path_rate, **cfg.model_overrides)
        model.check_inputs = False  # the crops are checked by construction; skips a host sync per step
        model.to(self.device).train()
        self.scan_impl = resolved_scan_impl(self.device)
        self.frozen = gradient_free_parameters(model, self.device)
        for name, p in model.named_parameters():
            if name in self.frozen:
                p.requires_grad_(False)
        if cfg.init_weights and resume is None:
            restarted = load_initial_weights(model, cfg.init_weights)
            log(f"initialised from {cfg.init_weights}"
                + (f" (another residual: output convolution zeroed, the model starts at its {model.residual} prior)"
                   if restarted else ""),
                self.is_main)
        self._seed(cfg.seed)
        if cfg.head_bias_init == "data" and resume is None and not cfg.init_weights:
            bias = output_bias_for(self.train_set.images, getattr(model, "residual_scale", 2.0),
                                   getattr(model, "residual", "sum"))
            with torch.no_grad():
                model.final_conv.bias.fill_(bias)
            log(f"output bias initialised to {bias:.4f} (mean of max(vis, ir) - residual over the training pairs)",
                self.is_main)
        self.model = model
        self.ddp_model: torch.nn.Module = model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.lr = cfg.lr
        # On a GPU: fused Adam (one kernel for all parameters, no host sync with the grad scaler)
        # reading its lr from a device tensor, which a captured step reads at every replay.
        on_gpu = self.device.type == "cuda"
        self.lr_tensor = torch.tensor(cfg.lr, device=self.device) if on_gpu else None
        self.optimizer = torch.optim.Adam(self.trainable, lr=self.lr_tensor if on_gpu else cfg.lr, betas=(0.9, 0.999),
                                          eps=1e-8, weight_decay=cfg.weight_decay, fused=on_gpu or None,
                                          capturable=on_gpu)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.loss_fn = FusionLoss(cfg.loss, cfg.loss_weights, cfg.quality_weights).to(self.device)
        self._no_term = torch.zeros((), device=self.device)  # the stats slot of a term the loss lacks

        per_rank = len(self.train_set) // self.dist.world_size
        if per_rank < cfg.batch:
            raise ValueError(f"batch {cfg.batch} is larger than the {per_rank} crops per epoch"
                             f"{' per GPU' if self.dist.enabled else ''} ({len(self.train_pairs)} training pairs x "
                             f"repeats {cfg.repeats}); lower --batch or raise --repeats")
        self.steps_per_epoch = per_rank // cfg.batch  # drop_last
        planned = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(planned, cfg.max_steps) if cfg.max_steps else planned

        self.epoch, self.step, self.elapsed = 0, 0, 0.0
        self.best_val: float | None = None
        self.history: list[dict[str, Any]] = []
        self._last_val_at = 0.0  # elapsed seconds at the last validation (or the start of this run)
        self._stop = False
        if resume is not None:
            self._resume(resume)
        self._setup_graph()

    def _setup_graph(self) -> None:
        """Plan the CUDA graph: capture after a few eager warm-up steps on a side stream."""
        self.graph: graph_step.StepGraph | None = None
        self.graph_status = "off"
        self._graph_warmup = 0
        if self.config.cuda_graph is False:
            return
        why = None
        if self.device.type != "cuda":
            why = "needs a CUDA device"
        elif self.dist.enabled:
            why = "not with DistributedDataParallel"
        elif self.scaler.is_enabled():
            why = "not with fp16's gradient scaler (use --amp bf16)"
        if why:
            self.graph_status = f"off ({why})"
            if self.config.cuda_graph:  # asked for explicitly: say why not
                log(f"--cuda-graph {why}; running eagerly", self.is_main)
            return
        self.graph_status = "pending"
        self._graph_warmup = graph_step.WARMUP_STEPS
        self._side_stream = torch.cuda.Stream(self.device)

    def _load_resume(self, path: str) -> dict[str, Any]:
        """Read a checkpoint to resume and check it fits this run's model (before any data is read)."""
        ckpt = load_training_checkpoint(path)
        ckpt["path"] = path
        saved = ckpt.get("config", {})
        if saved.get("preset") != self.config.preset or saved.get("model_overrides", {}) != self.config.model_overrides:
            raise ValueError(f"{path} was trained as preset {saved.get('preset')!r} "
                             f"{saved.get('model_overrides') or ''}; this run builds {self.config.preset!r}")
        return ckpt

    def _resume(self, ckpt: dict[str, Any]) -> None:
        path = ckpt["path"]
        self.model.load_state_dict(ckpt["model"])
        # The saved groups' settings (fused, capturable, lr) are those of the run that wrote them;
        # this run's win, and decide where Adam's step counts are loaded (device or host).
        saved = dict(ckpt["optimizer"])
        saved["param_groups"] = [
            {**group, **{k: mine[k] for k in ("fused", "capturable", "foreach")}, "lr": float(group["lr"])}
            for group, mine in zip(saved["param_groups"], self.optimizer.param_groups)
        ]
        self.optimizer.load_state_dict(saved)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_tensor if self.lr_tensor is not None else group["lr"]
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        self.best_val = ckpt.get("best_val")
        self.history = list(ckpt.get("history", []))
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])
        log(f"resumed from {path}: epoch {self.epoch}, step {self.step}", self.is_main)

    # ----------------------------------------------------------------- state
    def progress(self) -> float:
        """Fraction of the run done: of the planned steps, or of the time limit if that comes first."""
        p = self.step / self.total_steps
        if self.config.time_limit:
            p = max(p, self.elapsed / self.config.time_limit)
        return p

    def _tick(self) -> None:
        """Advance ``elapsed``: wall time of the run, validation and saving included."""
        now = time.perf_counter()
        self.elapsed += now - self._clock
        self._clock = now

    def _finished(self, shared: bool = True) -> bool:
        """Out of steps or time. Under DDP every rank must stop at the same step, so rank 0's
        clock decides, broadcast only when ``shared`` (a host round trip: not every step)."""
        cfg = self.config
        if cfg.max_steps and self.step >= cfg.max_steps:
            return True
        if not cfg.time_limit:
            return False
        self._tick()
        out_of_time = self.elapsed >= cfg.time_limit
        if self.dist.enabled:
            if not shared:
                return False
            flag = torch.tensor(float(out_of_time), device=self.device)
            dist.broadcast(flag, src=0)
            out_of_time = bool(flag.item())
        return out_of_time

    def checkpoint_state(self) -> dict[str, Any]:
        optimizer = self.optimizer.state_dict()
        for group in optimizer["param_groups"]:
            group["lr"] = self.lr  # a plain number, not the device tensor a captured step reads
        return {
            "model": self.model.state_dict(),
            "optimizer": optimizer,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch,
            "step": self.step,
            "elapsed": self.elapsed,
            "best_val": self.best_val,
            "config": dataclasses.asdict(self.config),
            "model_config": dict(self.model.config),
            "frozen_parameters": list(self.frozen),
            "history": self.history,
            "rng": rng_state(),
            "environment": {**environment(self.device, self.dist.world_size), "scan_impl": self.scan_impl,
                            "cuda_graph": self.graph_status},
        }

    def save(self, name: str) -> Path:
        return atomic_save(self.checkpoint_state(), self.out / name)

    # ----------------------------------------------------------------- one step
    def _set_lr(self) -> None:
        cfg = self.config
        self.lr = learning_rate(cfg.schedule, cfg.lr, epoch=self.epoch, step=self.step, progress=self.progress(),
                                warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio)
        if self.lr_tensor is not None:
            self.lr_tensor.fill_(self.lr)  # a kernel, no host round trip; shared by all param groups
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr

    def _step_body(self, vis: torch.Tensor, ir: torch.Tensor, graphed: bool = False) -> torch.Tensor:
        """Forward, loss, backward, clipping and the optimizer update. Gradients must be None or
        zero on entry. Returns [loss, ssim, int, grad, quality] as one device tensor (no host sync)."""
        cfg = self.config
        with self.autocast(cache_enabled=not graphed):  # autocast's weight cache cannot live in a graph
            out = self.ddp_model(vis, ir)
        loss, terms = self.loss_fn(clamp_unit(out.float()), vis, ir)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return torch.stack([loss.detach(), *(terms.get(name, self._no_term) for name in TERMS)])

    def _eager_step(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        # once a graph owns the gradient buffers they are zeroed in place, never dropped
        self.optimizer.zero_grad(set_to_none=self.graph is None)
        return self._step_body(vis, ir)

    def train_step(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch already on the device; returns [loss, ssim, int, grad, quality]."""
        self._set_lr()
        if self.graph is not None:
            stats = self.graph(vis, ir)
        elif self._graph_warmup > 0:
            stats = self._side_stream_step(vis, ir)
            self._graph_warmup -= 1
        elif self.graph_status == "pending":
            stats = self._capture(vis, ir)
        else:
            stats = self._eager_step(vis, ir)
        self.step += 1
        return stats

    def _side_stream_step(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """An eager step on the stream the graph will be captured on (warm-up before capture)."""
        main = torch.cuda.current_stream(self.device)
        self._side_stream.wait_stream(main)
        with torch.cuda.stream(self._side_stream):
            stats = self._eager_step(vis, ir)
        main.wait_stream(self._side_stream)
        return stats

    def _capture(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """Capture the step, check one replay against the eager step, and keep the graph if they
        agree. This step is done eagerly either way; on any failure the run goes on eagerly."""
        main = torch.cuda.current_stream(self.device)
        rng = torch.cuda.get_rng_state(self.device)
        started = time.perf_counter()
        try:
            graph = graph_step.capture_step(lambda v, i: self._step_body(v, i, graphed=True), vis, ir,
                                            self._side_stream, lambda: self.optimizer.zero_grad(set_to_none=True))
        except Exception as exc:  # capture is best effort: the eager step is always right
            graph_step.recover_from_failed_capture(self.device, main, rng)
            self.optimizer.zero_grad(set_to_none=True)
            self.graph_status = f"off (capture failed: {type(exc).__name__}: {str(exc)[:160]})"
            log(f"CUDA graph capture failed ({type(exc).__name__}: {str(exc)[:300]}); running eagerly",
                self.is_main)
            return self._eager_step(vis, ir)
        state = [t for s in self.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        self.graph = graph  # _eager_step now zeroes the graph's gradient buffers in place
        stats, mismatch = graph_step.check_against_eager(graph, self._eager_step, vis, ir, self.trainable, state)
        if mismatch:
            self.graph = None
            self.optimizer.zero_grad(set_to_none=True)
            self.graph_status = f"off (replay disagreed with the eager step: {mismatch})"
            log(f"CUDA graph not used: {mismatch}; running eagerly", self.is_main)
        else:
            self.graph_status = "on"
            log(f"CUDA graph captured and checked against the eager step in {time.perf_counter() - started:.1f} s "
                f"(batch {self.config.batch} x {self.config.crop}x{self.config.crop})", self.is_main)
        return stats

    # ----------------------------------------------------------------- loop
    def run(self) -> dict[str, Any]:
        """Train until the epochs, ``max_steps`` or ``time_limit`` run out; returns a summary."""
        cfg = self.config
        self._build()
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", self.out / "config.json")
            log(f"training {cfg.preset} on {len(self.train_pairs)} pairs ({len(self.val_pairs)} for validation), "
                f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {cfg.batch}"
                f"{f' x {self.dist.world_size} processes' if self.dist.enabled else ''}, crop {cfg.crop}, "
                f"device {describe_device(self.device)}, amp {self.amp_dtype or 'off'}, scan {self.scan_impl}, "
                f"pairs on {self.train_set.device.type}, CUDA graph {self.graph_status}")
        self._clock = time.perf_counter()
        start_step, start_elapsed = self.step, self.elapsed
        self._last_val_at = self.elapsed
        last_val: dict[str, float] = {}
        train_loss = float("nan")
        self._stop = self.epoch >= cfg.epochs or self._finished()
        while not self._stop:
            train_loss, epoch_done = self._train_epoch()
            val = self._end_epoch(train_loss, partial=not epoch_done)
            last_val = val or last_val
        self._tick()
        summary = {
            "steps": self.step,
            "epochs": self.epoch,
            "elapsed_s": round(self.elapsed, 1),
            "steps_per_s": round((self.step - start_step) / max(self.elapsed - start_elapsed, 1e-9), 2),
            "train_loss": train_loss,
            "val": last_val,
            "checkpoint": str(self.out / "last.pt"),
            "device": describe_device(self.device),
            "scan_impl": self.scan_impl,
            "cuda_graph": self.graph_status,
            "world_size": self.dist.world_size,
        }
        if self.dist.enabled:
            summary["ranks_agree"] = self._ranks_agree()
            dist.barrier()
        return summary

    def _batches(self):
        """(vis, ir) batches of this epoch for this process, float32 on the training device."""
        cfg, data = self.config, self.train_set
        order = data.epoch_order(cfg.seed, self.epoch, self.dist.rank, self.dist.world_size)
        gen = torch.Generator(device=data.device)
        gen.manual_seed(cfg.seed * 1_000_003 + self.epoch * 1_009 + self.dist.rank * 7_919 + 1)
        for i in range(self.steps_per_epoch):
            crops = data.batch(order[i * cfg.batch : (i + 1) * cfg.batch], gen)
            # pairs kept on the host: one pinned, asynchronous copy ("cuda" and "cuda:0" are one device,
            # so compare types, not devices)
            if crops.device.type == "cpu" and self.device.type != "cpu":
                crops = crops.pin_memory().to(self.device, non_blocking=True)
            pair = to_unit(crops)
            yield pair[0], pair[1]

    def _train_epoch(self) -> tuple[float, bool]:
        cfg = self.config
        bar = Progress(self.steps_per_epoch, f"epoch {self.epoch + 1}/{cfg.epochs}", every=cfg.log_every,
                       enabled=self.is_main)
        total = torch.zeros(1 + len(TERMS), device=self.device)  # loss and its terms, summed over steps
        done = 0
        for vis, ir in self._batches():
            total += self.train_step(vis, ir)
            done += 1
            report = done % cfg.log_every == 0 or done == self.steps_per_epoch
            if report:  # the only host round trip of the loop
                mean = (total / done).tolist()
                if not math.isfinite(mean[0]):
                    raise RuntimeError(f"training loss became {mean[0]} at step {self.step}; lower --lr or use "
                                       "--amp bf16 / --grad-clip")
                quality = f" quality {mean[4]:.4f}" if self.loss_fn.w_quality > 0 else ""
                bar.update(done, f"loss {mean[0]:.4f} (ssim {mean[1]:.4f} int {mean[2]:.5f} grad {mean[3]:.4f}"
                                 f"{quality}) lr {self.lr:.2e}")
            if self._finished(shared=report):
                break
        bar.close()
        if self.dist.enabled:
            dist.all_reduce(total)
            done_all = torch.tensor(float(done), device=self.device)
            dist.all_reduce(done_all)
            mean_loss = float(total[0] / done_all.clamp(min=1))
        else:
            mean_loss = float(total[0] / max(done, 1))
        epoch_done = done >= self.steps_per_epoch
        if epoch_done:
            self.epoch += 1
        return mean_loss, epoch_done

    def _end_epoch(self, train_loss: float, partial: bool = False) -> dict[str, float]:
        """Record the epoch; validate and save when due (always on the last). Sets ``_stop``."""
        cfg = self.config
        self._stop = partial or self.epoch >= cfg.epochs or self._finished()  # every rank calls _finished
        val: dict[str, float] = {}
        if self.is_main:
            self._tick()
            waited = self.elapsed - self._last_val_at >= cfg.val_interval
            due = self._stop or (self.epoch % max(1, cfg.val_every) == 0 and waited)
            if due and self.val_set is not None:
                loader = DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=0)
                try:
                    val = validate(self.model, loader, self.loss_fn, self.device, self.autocast)
                except BaseException:
                    self.save("last.pt")  # the training done so far is never lost to a failing validation
                    raise
            record = {"epoch": self.epoch, "step": self.step, "elapsed_s": round(self.elapsed, 1),
                      "lr": self.lr, "train_loss": train_loss, "partial_epoch": partial,
                      **{f"val_{k}": v for k, v in val.items()}}
            self.history.append(record)
            with open(self.out / "train_log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            shown = " ".join(f"{k} {v:.4f}" for k, v in val.items())
            label = f"epoch {self.epoch + 1} (stopped early)" if partial else f"epoch {self.epoch}"
            log(f"{label} step {self.step}: train loss {train_loss:.4f}; "
                f"val {shown or ('(not due)' if self.val_set is not None else '(no validation pairs)')}")
            if due:
                if val and (self.best_val is None or val["loss"] < self.best_val):
                    self.best_val = val["loss"]
                    self.save("best.pt")
                self._tick()
                self._last_val_at = self.elapsed
                self.save("last.pt")
        if self.dist.enabled:
            dist.barrier()
        return val

    def _ranks_agree(self) -> bool:
        """True when every process holds bit-identical parameters (as DDP promises); logged by rank 0."""
        sums = torch.stack([t.detach().double().sum() for t in self.model.state_dict().values()
                            if t.is_floating_point()])
        sums = torch.cat([sums, sums.square()])
        gathered = [torch.empty_like(sums) for _ in range(self.dist.world_size)]
        dist.all_gather(gathered, sums)
        agree = all(torch.equal(gathered[0], other) for other in gathered[1:])
        log(f"parameters of the {self.dist.world_size} processes {'agree' if agree else 'DIFFER'} "
            f"(per-tensor sums compared)", self.is_main)
        return agree


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    return {
        "device": describe_device(device),
        "gpus": world_size if device.type == "cuda" else 0,
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }


def train(config: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run a training job described by ``config``; see :class:`TrainConfig`.

    A process group this call joined is left again before returning: gloo's worker threads
    otherwise outlive the interpreter and abort the process at exit (SIGABRT after a good run)."""
    joined_before = dist.is_available() and dist.is_initialized()
    try:
        return Trainer(config, resume=resume).run()
    finally:
        if not joined_before and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
