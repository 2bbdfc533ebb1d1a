"""The training loop: Adam, lr schedule, AMP, clipping, checkpoints with resume, validation, DDP.

Single process on CPU or one GPU, or several GPUs of one host under ``torchrun`` (RANK,
WORLD_SIZE and LOCAL_RANK in the environment): each process trains on its share of the crops
(DistributedSampler) with a per-GPU batch of ``batch``; only rank 0 validates and writes files.
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
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from fusion_edge.train.checkpointing import (
    atomic_save,
    atomic_write_text,
    load_training_checkpoint,
    rng_state,
    set_rng_state,
)
from fusion_edge.train.data import FullImagePairs, RandomCropPairs, find_pairs, split_pairs
from fusion_edge.train.losses import LOSS_WEIGHTS, FusionLoss, clamp_unit
from fusion_edge.train.progress import Progress, log
from fusion_edge.train.schedule import SCHEDULES, learning_rate
from fusion_edge.train.validation import validate

AMP_MODES = ("auto", "off", "bf16", "fp16")


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
    amp: str = "auto"
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    drop_path_rate: float = 0.1
    head_bias_init: str = "none"  # "data": start the output bias at the mean gap to the intensity target
    init_weights: str | None = None  # start from these weights (fine-tuning); optimizer state starts fresh
    seed: int = 0
    val_fraction: float = 0.1
    val_max_side: int | None = None  # centre-crop validation images to this size (None: whole images)
    val_every: int = 1  # validate every N epochs (and always at the end)
    workers: int = 2
    max_steps: int | None = None
    time_limit: float | None = None  # seconds of training; the run then validates, saves and stops
    scan_impl: str = "auto"
    cuda_graph: bool = False  # capture forward + loss + backward in a CUDA graph (one GPU, fixed shapes)
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
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp mode {self.amp!r}; choose one of: {', '.join(AMP_MODES)}")
        if self.head_bias_init not in ("none", "data"):
            raise ValueError(f"unknown head_bias_init {self.head_bias_init!r}; choose none or data")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be positive, got {self.time_limit}")


def load_initial_weights(model: torch.nn.Module, path: str) -> None:
    """Copy a checkpoint's weights (any format ``load_checkpoint`` reads) into ``model``, strictly."""
    from fusion_edge.models.checkpoint import load_checkpoint

    source = load_checkpoint(path)
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"--init weights {path} do not fit the {type(model).__name__} being trained: {exc}") from exc


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
    """(context factory, dtype): bf16 on GPU by default, nothing on CPU."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return contextlib.nullcontext, None
    if device.type != "cuda":
        raise ValueError(f"mixed precision ({amp}) needs a CUDA device; use --amp off on {device.type}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


def output_bias_for(images: list, residual_scale: float) -> float:
    """Mean of max(vis, ir) - residual_scale * (vis + ir) over the training pairs.

    The network adds residual_scale * (vis + ir) to its head; on bright scenes that sum starts far
    above 1, the clamp before the loss zeroes the gradient of nearly every pixel, and Adam moves
    the head's bias by about lr per step. Starting the bias at this gap puts the output in range
    from the first step (same architecture and loss; only the initial value differs).
    """
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

    # ----------------------------------------------------------------- setup
    def _seed(self, seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)

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
        self.val_set = FullImagePairs(self.val_pairs, cfg.val_max_side) if self.val_pairs else None

        from fusion_edge.models import create_model

        model = create_model(cfg.preset, drop_path_rate=cfg.drop_path_rate, **cfg.model_overrides)
        model.check_inputs = False  # the loader guarantees shape and range; skips a host sync per step
        model.to(self.device).train()
        self.frozen = gradient_free_parameters(model, self.device)
        for name, p in model.named_parameters():
            if name in self.frozen:
                p.requires_grad_(False)
        if cfg.init_weights and resume is None:
            load_initial_weights(model, cfg.init_weights)
            log(f"initialised from {cfg.init_weights}", self.is_main)
        self._seed(cfg.seed)
        if cfg.head_bias_init == "data" and resume is None and not cfg.init_weights:
            bias = output_bias_for(self.train_set.images, getattr(model, "residual_scale", 2.0))
            with torch.no_grad():
                model.final_conv.bias.fill_(bias)
            log(f"output bias initialised to {bias:.4f} (mean of max(vis, ir) - residual over the training pairs)",
                self.is_main)
        self.model = model
        self.ddp_model: torch.nn.Module = model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                          weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.loss_fn = FusionLoss(cfg.loss).to(self.device)
        self.graphed: torch.nn.Module | None = None
        if cfg.cuda_graph:
            self.graphed = self._capture_graph()

        per_rank = len(self.train_set) // self.dist.world_size
        if per_rank < cfg.batch:
            raise ValueError(f"batch {cfg.batch} is larger than the {per_rank} crops per epoch"
                             f"{' per GPU' if self.dist.enabled else ''} ({len(self.train_pairs)} training pairs x "
                             f"repeats {cfg.repeats}); lower --batch or raise --repeats")
        self.steps_per_epoch = per_rank // cfg.batch  # drop_last
        planned = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(planned, cfg.max_steps) if cfg.max_steps else planned

        self.epoch, self.step, self.elapsed = 0, 0, 0.0
        self._saved_step = -1
        self.best_val: float | None = None
        self.history: list[dict[str, Any]] = []
        if resume is not None:
            self._resume(resume)

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
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        self._saved_step = self.step
        self.best_val = ckpt.get("best_val")
        self.history = list(ckpt.get("history", []))
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])
        log(f"resumed from {path}: epoch {self.epoch}, step {self.step}", self.is_main)

    def _capture_graph(self) -> torch.nn.Module | None:
        """Forward, loss and backward as CUDA graphs: the edge model's step is a long chain of small
        kernels, so launching them one by one costs more than running them. Falls back to eager
        steps (with a message) where capture is impossible or the graphed loss disagrees."""
        cfg = self.config
        if self.device.type != "cuda" or self.dist.enabled:
            log("--cuda-graph needs one CUDA device and no DDP; running eagerly", self.is_main)
            return None
        step = LossStep(self.model, self.loss_fn, self.amp_dtype)
        shape = (cfg.batch, self.model.in_chans, cfg.crop, cfg.crop)
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        sample = tuple(torch.rand(shape, device=self.device, generator=gen) for _ in range(2))
        rng = torch.cuda.get_rng_state(self.device)
        try:
            graphed = torch.cuda.make_graphed_callables(step, sample)
            # same RNG state for both, and gradients on, so both take the same (training) code path
            torch.cuda.set_rng_state(rng, self.device)
            got = float(graphed(*sample)[0].detach())
            torch.cuda.set_rng_state(rng, self.device)
            want = float(step.eager(*sample)[0].detach())
            if not math.isfinite(got) or abs(got - want) > 0.05 * abs(want) + 1e-3:
                raise RuntimeError(f"graphed loss {got:.5f} vs eager {want:.5f}")
        except Exception as exc:  # capture is best effort: the eager step is always correct
            log(f"CUDA graph capture failed ({type(exc).__name__}: {str(exc)[:200]}); running eagerly", self.is_main)
            torch.cuda.synchronize(self.device)
            return None
        finally:
            torch.cuda.set_rng_state(rng, self.device)
            self.model.zero_grad(set_to_none=True)
        log(f"CUDA graph captured for batch {cfg.batch} x {cfg.crop}x{cfg.crop} (loss check {got:.4f} vs eager "
            f"{want:.4f})", self.is_main)
        return graphed

    def _loader(self, epoch: int) -> DataLoader:
        cfg = self.config
        # One generator per (seed, epoch, rank): crops and order are reproducible and survive resume.
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 1_009 + self.dist.rank)
        if self.dist.enabled:
            sampler = DistributedSampler(self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                         shuffle=True, seed=cfg.seed, drop_last=True)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(self.train_set, generator=gen)
        return DataLoader(self.train_set, batch_size=cfg.batch, sampler=sampler, drop_last=True,
                          num_workers=cfg.workers, pin_memory=self.device.type == "cuda", generator=gen,
                          persistent_workers=False)

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

    def _finished(self) -> bool:
        cfg = self.config
        if cfg.max_steps and self.step >= cfg.max_steps:
            return True
        if not cfg.time_limit:
            return False
        self._tick()
        out_of_time = self.elapsed >= cfg.time_limit
        if self.dist.enabled:  # every rank must stop at the same step, so rank 0's clock decides
            flag = torch.tensor(float(out_of_time), device=self.device)
            dist.broadcast(flag, src=0)
            out_of_time = bool(flag.item())
        return out_of_time

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
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
            "environment": environment(self.device, self.dist.world_size),
        }

    def save(self, name: str) -> Path:
        return atomic_save(self.checkpoint_state(), self.out / name)

    # ----------------------------------------------------------------- loop
    def train_step(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        lr = learning_rate(cfg.schedule, cfg.lr, epoch=self.epoch, step=self.step, progress=self.progress(),
                           warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        vis = vis.to(self.device, non_blocking=True)
        ir = ir.to(self.device, non_blocking=True)
        if self.graphed is not None:
            loss, parts = self.graphed(vis, ir)  # static output buffers: used before the next replay
            terms = {"ssim": parts[0], "int": parts[1], "grad": parts[2]}
        else:
            with self.autocast():
                out = self.ddp_model(vis, ir)
            loss, terms = self.loss_fn(clamp_unit(out.float()), vis, ir)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return loss.detach(), terms

    def run(self) -> dict[str, Any]:
        """Train until the epochs, ``max_steps`` or ``time_limit`` run out; returns a summary."""
        cfg = self.config
        self._build()
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", self.out / "config.json")
            log(f"training {cfg.preset} on {len(self.train_pairs)} pairs ({len(self.val_pairs)} for validation), "
                f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {cfg.batch}"
                f"{f' x {self.dist.world_size} GPUs' if self.dist.enabled else ''}, crop {cfg.crop}, "
                f"device {describe_device(self.device)}, amp {self.amp_dtype or 'off'}")
        self._clock = time.perf_counter()
        last_val: dict[str, float] = {}
        train_loss = float("nan")
        while self.epoch < cfg.epochs and not self._finished():
            train_loss, epoch_done = self._train_epoch()
            if not epoch_done:
                break
            last_val = self._end_epoch(train_loss)
        if self._saved_step != self.step:
            last_val = self._end_epoch(train_loss, partial=True)
        self._tick()
        if self.dist.enabled:
            dist.barrier()
        return {
            "steps": self.step,
            "epochs": self.epoch,
            "elapsed_s": round(self.elapsed, 1),
            "train_loss": train_loss,
            "val": last_val,
            "checkpoint": str(self.out / "last.pt"),
            "device": describe_device(self.device),
        }

    def _train_epoch(self) -> tuple[float, bool]:
        cfg = self.config
        loader = self._loader(self.epoch)
        bar = Progress(self.steps_per_epoch, f"epoch {self.epoch + 1}/{cfg.epochs}", every=cfg.log_every,
                       enabled=self.is_main)
        total = torch.zeros(4, device=self.device)  # loss, ssim, int, grad (summed over steps)
        done = 0
        for vis, ir in loader:
            loss, terms = self.train_step(vis, ir)
            total += torch.stack([loss, terms["ssim"], terms["int"], terms["grad"]])
            done += 1
            if done % cfg.log_every == 0 or done == self.steps_per_epoch:
                mean = (total / done).tolist()
                if not math.isfinite(mean[0]):
                    raise RuntimeError(f"training loss became {mean[0]} at step {self.step}; lower --lr or use "
                                       "--amp bf16 / --grad-clip")
                bar.update(done, f"loss {mean[0]:.4f} (ssim {mean[1]:.4f} int {mean[2]:.5f} grad {mean[3]:.4f}) "
                                 f"lr {self.optimizer.param_groups[0]['lr']:.2e}")
            if self._finished():
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
        val: dict[str, float] = {}
        last = partial or self.epoch >= self.config.epochs or self._finished()  # every rank calls _finished
        if self.is_main:
            due = last or self.epoch % max(1, self.config.val_every) == 0
            if self.val_set is not None and due:
                loader = DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=0)
                try:
                    val = validate(self.model, loader, self.loss_fn, self.device, self.autocast)
                except BaseException:
                    self.save("last.pt")  # the training done so far is never lost to a failing validation
                    raise
            record = {"epoch": self.epoch, "step": self.step, "elapsed_s": round(self.elapsed, 1),
                      "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                      "partial_epoch": partial, **{f"val_{k}": v for k, v in val.items()}}
            self.history.append(record)
            with open(self.out / "train_log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            shown = " ".join(f"{k} {v:.4f}" for k, v in val.items())
            label = f"epoch {self.epoch + 1} (stopped early)" if partial else f"epoch {self.epoch}"
            log(f"{label} step {self.step}: train loss {train_loss:.4f}; val {shown or '(not run)'}")
            if val and (self.best_val is None or val["loss"] < self.best_val):
                self.best_val = val["loss"]
                self.save("best.pt")
            self._tick()
            self.save("last.pt")
        self._saved_step = self.step
        if self.dist.enabled:
            dist.barrier()
        return val


class LossStep(torch.nn.Module):
    """Model, clamp and loss as one module, the unit a CUDA graph captures.

    Returns (total loss, [ssim, int, grad] terms). Autocast runs inside with its weight cache off,
    as graph capture requires.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: FusionLoss, amp_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model, self.loss_fn, self.amp_dtype = model, loss_fn, amp_dtype

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.eager(vis, ir)

    def eager(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(vis.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None, cache_enabled=False):
            out = self.model(vis, ir)
        total, terms = self.loss_fn(clamp_unit(out.float()), vis, ir)
        return total, torch.stack([terms["ssim"], terms["int"], terms["grad"]])


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
    """Run a training job described by ``config``; see :class:`TrainConfig`."""
    return Trainer(config, resume=resume).run()
