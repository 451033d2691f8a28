"""The `lowbit` command: `lowbit demo`, `lowbit info`, `lowbit bench`, `lowbit --version`."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from ._core.version import __version__

DESCRIPTION = ("Exact int8 and int4 quantized inference kernels for CPUs (AVX-512 VNNI, "
               "AVX-VNNI, AVX2, NEON, scalar; picked at run time): ONNX-semantics NumPy "
               "primitives, 8-bit and 4-bit (W4A8, weight-only) linear layers, and PyTorch / "
               "NumPy model conversion. LOWBIT_ISA=<path> forces a kernel path.")
QUICK_MS = (1, 16)
QUICK_SHAPES = ((1536, 384),)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    """'1,16,256' -> (1, 16, 256), each >= 1."""
    values = tuple(_positive_int(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 1,16,256, got {text!r}")
    return values


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    """'4096x4096,384x1536' -> ((4096, 4096), (384, 1536)): K x N (in x out features)."""
    shapes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        k, sep, n = part.lower().partition("x")
        if not sep:
            raise argparse.ArgumentTypeError(
                f"a shape is KxN (in_features x out_features), e.g. 4096x4096; got {part!r}")
        shapes.append((_positive_int(k), _positive_int(n)))
    if not shapes:
        raise argparse.ArgumentTypeError(f"expected shapes like 4096x4096,384x1536, got {text!r}")
    return tuple(shapes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowbit", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"lowbit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo", help="compare a float32 and an int8 digits classifier (size, speed, accuracy)")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="kernel threads for the int8 model (default: lowbit's current setting)")
    demo.add_argument("--repeats", type=_positive_int, default=50,
                      help="timed runs per measurement; the median is reported (default: 50)")

    commands.add_parser("info", help="print the CPU's kernel paths and thread count as JSON")
    bench = commands.add_parser(
        "bench", help="time lowbit.linear (int8) against NumPy float32 and the installed peers "
                      "(PyTorch, ONNX Runtime), each in its own process")
    bench.add_argument("--quick", action="store_true",
                       help=f"a short run: M in {','.join(map(str, QUICK_MS))}, shape "
                            f"{'x'.join(map(str, QUICK_SHAPES[0]))}, one repeat (the options "
                            "below override it)")
    bench.add_argument("--shapes", type=_shapes, default=None, metavar="KxN[,KxN...]",
                       help="weight shapes, in_features x out_features (default: 1536x384,"
                            "4096x4096)")
    bench.add_argument("--M", type=_int_list, default=None, metavar="M[,M...]",
                       help="rows of the activations (default: 1,16,256)")
    bench.add_argument("--threads", type=_positive_int, default=None,
                       help="threads for every method (default: lowbit's current setting)")
    bench.add_argument("--repeats", type=_positive_int, default=None,
                       help="timing rounds per point, the median is kept (default: 3)")
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(threads=args.threads, repeats=args.repeats)
    return 0


def _info(args: argparse.Namespace) -> int:
    from . import cpu_info
    print(json.dumps(cpu_info(), indent=2, default=str))
    return 0


def bench_settings(args: argparse.Namespace) -> dict[str, object]:
    """The run_short arguments `lowbit bench` options ask for (explicit options win over
    --quick's defaults)."""
    settings: dict[str, object] = {}
    if args.quick:
        settings.update(Ms=QUICK_MS, shapes=QUICK_SHAPES, repeats=1)
    for key, value in (("Ms", args.M), ("shapes", args.shapes), ("threads", args.threads),
                       ("repeats", args.repeats)):
        if value is not None:
            settings[key] = value
    return settings


def _bench(args: argparse.Namespace) -> int:
    # Imported here so `lowbit demo` and `lowbit info` never pay for the benchmark's imports.
    from .benchmark import run_short
    run_short(**bench_settings(args))   # type: ignore[arg-type]
    return 0


COMMANDS = {"demo": _demo, "info": _info, "bench": _bench}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
