"""The runtime works where torch is absent (a Jetson that only runs engines): import it, fuse
with ONNX Runtime, stream through the pipeline and the run command, in a process where any
import of torch fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fusion_edge.runtime.testing import write_reference_model

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is not installed here ({name})")

    sys.meta_path.insert(0, BlockTorch())
    sys.modules.pop("torch", None)

    import numpy as np
    import fusion_edge.runtime as rt
    from fusion_edge.runtime.engines import available_backends

    model, pt, out = sys.argv[1], sys.argv[2], sys.argv[3]
    assert "torch" not in available_backends(), available_backends()
    engine = rt.FusionEngine(model)
    ir = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)
    vis = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    fused = engine.fuse(ir, vis)
    assert fused.shape == (48, 64, 3) and fused.dtype == np.uint8

    src = dict(live=False, count=20)
    with rt.FusionPipeline(model, ir=rt.SyntheticSource((32, 48), **src),
                           vis=rt.SyntheticSource((32, 48), channels=3, **src)) as pipe:
        assert len(list(pipe)) == 20

    from fusion_edge.cli import main
    assert main(["run", "--ir", "synthetic:40x30:7", "--vis", "synthetic:40x30:7", "--model", model,
                 "--out-dir", out, "-q"]) == 0

    try:
        rt.FusionEngine(pt)
    except ImportError as exc:
        assert "needs torch" in str(exc), exc
    else:
        raise AssertionError("the torch backend loaded without torch")

    loaded = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] == "torch")
    assert not loaded, loaded
    print("RUNTIME-WITHOUT-TORCH-OK")
    """
)


def test_runtime_runs_with_torch_blocked(tmp_path):
    model = write_reference_model(tmp_path / "m" / "model.onnx", "max")
    pt = tmp_path / "weights.pt"
    pt.write_bytes(b"placeholder: never read, loading must fail on the missing torch first")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), str(pt), str(tmp_path / "frames")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RUNTIME-WITHOUT-TORCH-OK" in result.stdout
    assert len(list((tmp_path / "frames").glob("*.png"))) == 7
