"""The ``fusion-edge`` command: one sub-command per module in ``fusion_edge.commands``.

Each command module imports its heavy dependencies inside its handler, so that
``fusion-edge run`` works on a machine with only the runtime installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order ``--help`` lists them. Each defines ``register(subparsers)``.
COMMANDS = ["demo", "fuse", "train", "run", "calibrate", "eval", "bench", "export"]


class CommandError(Exception):
    """An error whose message is for the user (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-edge", description="FusionMamba infrared/visible image fusion")
    from fusion_edge import __version__

    parser.add_argument("--version", action="version", version=f"fusion-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"fusion_edge.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"fusion-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fusion-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
