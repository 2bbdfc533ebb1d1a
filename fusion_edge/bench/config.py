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
    "torch-compile",
    "ort-cpu",
    "ort-cuda",
    "tensorrt",
)
PRESET_NAMES = ("edge", "tiny", "paper")

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
    iters: int = 50
    max_seconds: float = 120.0
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch and ONNX Runtime (None: their defaults)
    out_dir: Path | None = None

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
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")
        if self.max_seconds <= 0:
            raise ValueError(f"--max-seconds must be positive, got {self.max_seconds}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def default_sizes(self, on_gpu: bool) -> list[tuple[int, int]]:
        if on_gpu:
            return list(STANDARD_SIZES)
        return list(CPU_DEFAULT_SIZES.get(self.preset or "edge", CPU_DEFAULT_SIZES["edge"]))
