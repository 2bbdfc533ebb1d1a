"""What a benchmark run measures: the model, backends, sizes and timing settings, validated up front."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Every backend the benchmark knows, in the order tables list them.
BACKENDS = (
    "torch-chunked",
    "torch-cuda",
    "torch-cuda-graph",
    "torch-cuda-compile",
    "torch-cuda-compile-graph",
    "torch-compile",
    "ort-cpu",
    "ort-cuda",
    "tensorrt",
)
PRESET_NAMES = ("edge", "tiny", "paper")
# How torch backends run --fp16: autocast of the float32 model, or a float16 copy of the model
# (the ES2D scan parameters stay float32: the fused kernel reads them so).
TORCH_FP16_MODES = ("autocast", "half")
# torch.compile modes of the torch-cuda-compile backends (CUDA graphs are the -graph backend's job).
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
# What torch-cuda-compile compiles: the whole model as one graph, each DVSS / DFFM block on its own
# (identical blocks share one compilation: far less compile time, no fusion across blocks), or each
# encoder / decoder stage whole (fusion across the blocks of a stage; DFFM blocks on their own).
COMPILE_SCOPES = ("model", "blocks", "stages")
# inductor generates the kernels; aot_eager and eager only trace (for checking graphs quickly).
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")

STANDARD_SIZES = ((256, 256), (480, 640), (512, 640), (1024, 1280))
# A 2-core CPU needs seconds to minutes per paper-sized frame, so CPU defaults stay small.
CPU_DEFAULT_SIZES = {"edge": ((256, 256), (512, 640)), "tiny": ((256, 256),), "paper": ((256, 256),)}

_SIZE = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'480x640' -> (480, 640): height first, as the model's (B, 1, H, W) inputs."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"size {text!r} is not HxW (height x width, e.g. 512x640)")
    height, width = int(match.group(1)), int(match.group(2))
    if height < 1 or width < 1:
        raise ValueError(f"size {text!r} must be positive in both dimensions")
    return height, width


def format_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def parse_backend_sizes(items: list[str]) -> dict[str, list[tuple[int, int]]]:
    """['torch-chunked=256x256,512x640', ...] -> {'torch-chunked': [(256, 256), (512, 640)]}."""
    out: dict[str, list[tuple[int, int]]] = {}
    for item in items:
        backend, sep, sizes = item.partition("=")
        if not sep or not sizes.strip():
            raise ValueError(f"--backend-sizes {item!r} is not BACKEND=HxW[,HxW...]")
        check_backends([backend.strip()])
        out[backend.strip()] = [parse_size(s) for s in sizes.split(",")]
    return out


def check_backends(names: list[str]) -> list[str]:
    """Known names, duplicates removed, in the order given."""
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend {', '.join(map(repr, unknown))}; choose from: {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


@dataclass
class BenchConfig:
    """One benchmark run. ``model`` (a file) and ``preset`` may both be given: the preset checks the file."""

    preset: str | None = None
    model: Path | None = None
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    sizes: list[tuple[int, int]] = field(default_factory=list)
    fp16: bool = False
    batch: int = 1
    warmup: int = 10
    warmup_seconds: float = 0.5  # keep warming up until this long (clocks back up after a compilation's idle)
    iters: int = 50
    max_seconds: float = 120.0
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch and ONNX Runtime (None: their defaults)
    out_dir: Path | None = None
    torch_fp16: str = "autocast"
    compile_mode: str = "default"
    compile_scope: str = "blocks"
    compile_backend: str = "inductor"
    compile_freeze: bool = True  # inductor freezing: weights folded into the compiled code (inference only)
    cross_stream: bool = True  # torch backends on a GPU: the cross-modal blocks on a second CUDA stream
    compile_combo: bool = True  # inductor combo kernels on the GPU: independent small kernels launched as one
    compile_autotune_pointwise: bool = False  # GPU: inductor times several configurations of each elementwise kernel
    compile_autotune_reductions: bool = False  # GPU: the same for each reduction kernel
    cudnn_benchmark: bool = True  # GPU: cuDNN times its convolution algorithms on first use and keeps the fastest
    compile_timeout: float = 600.0  # seconds one torch.compile compilation may take
    time_budget: float | None = None  # seconds for the whole run; configurations after it are skipped
    min_iters: int | None = None  # over --max-seconds, time this many calls at least instead of skipping
    count_cost: bool = True  # count FLOPs and bytes per frame (a few seconds per size)
    backend_sizes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # backend -> its only sizes
    profile: int = 0  # calls profiled after timing each PyTorch configuration (0: none)

    def validate(self) -> None:
        if self.preset is None and self.model is None:
            raise ValueError("give --preset NAME or --model PATH")
        if self.preset is not None and self.preset not in PRESET_NAMES:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(PRESET_NAMES)}")
        if self.model is not None and not Path(self.model).is_file():
            raise FileNotFoundError(f"model file not found: {self.model}")
        self.backends = check_backends(self.backends)
        if not self.backends:
            raise ValueError("no backend selected")
        for name, value, low in (("batch", self.batch, 1), ("iters", self.iters, 1), ("warmup", self.warmup, 0)):
            if value < low:
                raise ValueError(f"--{name} must be at least {low}, got {value}")
        if self.warmup_seconds < 0:
            raise ValueError(f"--warmup-seconds must be 0 or more, got {self.warmup_seconds}")
        if self.profile < 0:
            raise ValueError(f"--profile must be 0 or more calls, got {self.profile}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")
        if self.max_seconds <= 0:
            raise ValueError(f"--max-seconds must be positive, got {self.max_seconds}")
        for name, value, choices in (("torch-fp16", self.torch_fp16, TORCH_FP16_MODES),
                                     ("compile-mode", self.compile_mode, COMPILE_MODES),
                                     ("compile-scope", self.compile_scope, COMPILE_SCOPES),
                                     ("compile-backend", self.compile_backend, COMPILE_BACKENDS)):
            if value not in choices:
                raise ValueError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.min_iters is not None and not 1 <= self.min_iters <= self.iters:
            raise ValueError(f"--min-iters must be between 1 and --iters ({self.iters}), got {self.min_iters}")
        for backend, sizes in self.backend_sizes.items():
            if backend not in self.backends:
                raise ValueError(f"--backend-sizes names {backend!r}, which is not among the backends to run")
            missing = [format_size(s) for s in sizes if self.sizes and s not in self.sizes]
            if missing:
                raise ValueError(f"--backend-sizes {backend}: {', '.join(missing)} not among --size")
        if self.compile_timeout <= 0:
            raise ValueError(f"--compile-timeout must be positive, got {self.compile_timeout}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ValueError(f"--time-budget must be positive, got {self.time_budget}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def default_sizes(self, on_gpu: bool) -> list[tuple[int, int]]:
        if on_gpu:
            return list(STANDARD_SIZES)
        return list(CPU_DEFAULT_SIZES.get(self.preset or "edge", CPU_DEFAULT_SIZES["edge"]))
