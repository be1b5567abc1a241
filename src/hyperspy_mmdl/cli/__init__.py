"""The ``mmdl`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function
taking the parsed arguments and returning an exit code. Heavy imports stay inside
those functions so ``mmdl --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command modules, in the order ``mmdl --help`` lists them
COMMANDS = ["demo", "analyze", "batch", "train", "evaluate", "models"]


def build_parser() -> argparse.ArgumentParser:
    from hyperspy_mmdl import __version__

    parser = argparse.ArgumentParser(
        prog="mmdl",
        description="Microstructure analysis with deep learning: grains, classification, PCE, batch.",
    )
    parser.add_argument("--version", action="version", version=f"mmdl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"hyperspy_mmdl.cli.{name}")
        except ModuleNotFoundError as err:  # a sub-command not written yet
            if err.name == f"hyperspy_mmdl.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"mmdl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
