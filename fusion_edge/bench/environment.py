"""Where a benchmark ran: device names and software versions, so every number names its machine."""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys


def cpu_name() -> str:
    """The CPU model as the OS reports it (``/proc/cpuinfo`` on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "unknown")
    except Exception:  # noqa: BLE001 - a broken optional install is reported as absent
        return None


def _tensorrt_version() -> str | None:
    try:
        from fusion_edge.export.trt_loader import import_tensorrt
    except ImportError:
        version = _version("tensorrt")
        return f"tensorrt {version}" if version else None
    try:
        trt = import_tensorrt()
    except (ImportError, ValueError):
        return None
    return f"{trt.__name__} {getattr(trt, '__version__', 'unknown')}"


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def describe(device: str) -> dict:
    """Device and software facts for the report (``device`` is the torch device string used)."""
    import torch

    info: dict = {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "gpu": None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info["gpu"] = props.name
        info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        info["compute_capability"] = f"{props.major}.{props.minor}"
    software = {
        "fusion_edge": importlib.import_module("fusion_edge").__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "driver": _nvidia_driver(),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _tensorrt_version(),
        "cupy": _version("cupy"),
    }
    try:
        import onnxruntime

        software["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    info["software"] = software
    return info


def device_label(info: dict) -> str:
    """One line naming the machine, for table captions and plot titles."""
    if info.get("gpu"):
        return f"{info['gpu']} (CUDA {info['software'].get('cuda')}), host CPU {info['cpu']}"
    threads = info["torch_threads"]
    return f"{info['cpu']}, {info['cpu_cores']} cores ({threads} torch thread{'s' if threads != 1 else ''})"
