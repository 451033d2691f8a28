"""The `lowbit` command: `lowbit demo`, `lowbit info`, `lowbit bench`."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowbit", description="Exact int8 quantized inference kernels for CPUs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo", help="compare a float32 and an int8 digits classifier (size, speed, accuracy)")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="kernel threads for the int8 model (default: lowbit's current setting)")
    demo.add_argument("--repeats", type=_positive_int, default=50,
                      help="timed runs per measurement; the median is reported (default: 50)")

    commands.add_parser("info", help="print the CPU's kernel paths and thread count as JSON")
    commands.add_parser("bench", help="run a short kernel benchmark")
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(threads=args.threads, repeats=args.repeats)
    return 0


def _info(args: argparse.Namespace) -> int:
    from . import cpu_info
    print(json.dumps(cpu_info(), indent=2, default=str))
    return 0


def _bench(args: argparse.Namespace) -> int:
    # Imported here so `lowbit demo` and `lowbit info` never pay for the benchmark's imports.
    from .benchmark import run_short
    run_short()
    return 0


COMMANDS = {"demo": _demo, "info": _info, "bench": _bench}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
