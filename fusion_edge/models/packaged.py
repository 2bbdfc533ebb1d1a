"""Trained weights that ship inside the package, by name: ``--checkpoint NAME`` takes these as well as paths."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# name -> file in fusion_edge/weights/ (each with a .json record beside it)
PACKAGED_WEIGHTS = {
    # the default: edge preset, head + the two-scale prior, trained with --loss quality (README, "Default weights")
    "edge": "edge.pt",
    # stage 4 of the default's training: edge preset, head + (vis + ir); the highest MS-SSIM of ours
    "edge-sum": "edge_sum.pt",
}
DEFAULT_NAME = "edge"


def packaged_weights_path(name: str = DEFAULT_NAME) -> Path | None:
    """The file of packaged weights ``name``, or None when this build lacks it (or the name is unknown)."""
    file = PACKAGED_WEIGHTS.get(name)
    if file is None:
        return None
    path = Path(str(resources.files("fusion_edge") / "weights" / file))
    return path if path.is_file() else None


def resolve_checkpoint(source: str | Path) -> Path:
    """A checkpoint argument as a file: an existing path as given, else packaged weights of that name."""
    path = Path(source)
    if not path.is_file():
        packaged = packaged_weights_path(str(source))
        if packaged is not None:
            return packaged
    return path


def checkpoint_not_found(source: str | Path) -> FileNotFoundError:
    """The error for a checkpoint argument that is neither a file nor a packaged name (it lists the names)."""
    names = ", ".join(PACKAGED_WEIGHTS)
    return FileNotFoundError(f"checkpoint not found: {source} (packaged weights by name: {names})")
