"""Write files so that they appear whole or not at all (temp file in the same folder + os.replace)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove we can write there; raise a clear error if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-", delete=True)
        probe.close()
    except FileExistsError:
        raise NotADirectoryError(f"output path {folder} exists and is not a folder") from None
    except OSError as exc:
        raise PermissionError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None
    return folder


@contextlib.contextmanager
def staging_folder(folder: str | Path) -> Iterator[Path]:
    """A hidden folder beside the final files (same file system, so moves are atomic renames).

    Removed on exit whatever happens; files the caller has not moved out are discarded.
    """
    folder = check_writable(folder)
    stage = Path(tempfile.mkdtemp(prefix=".fusion-edge-export-", dir=folder))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, folder: Path, names: list[str], stale: list[str] = ()) -> None:
    """Move ``names`` from ``stage`` into ``folder`` (the last name last) and drop ``stale`` leftovers.

    Each move is an atomic rename; put the manifest last so that a reader who sees the new
    manifest also sees the files it describes.
    """
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    for name in names:
        os.replace(stage / name, folder / name)
