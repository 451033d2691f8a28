"""Writes the small seed corpus under fuzz/corpus/<target>/ (committed; rerun only to reset it).

Every target reads its input as a stream of parameters that turns into zeros when it runs out,
so any bytes are a valid input: the seeds are short all-zero / all-0xFF inputs (smallest and
extreme parameters) and a few fixed pseudo-random ones of different lengths. libFuzzer grows
its own corpus from these during a CI run; that corpus is not kept.
"""
import pathlib
import random

TARGETS = ("fuzz_quantize", "fuzz_matmul", "fuzz_linear", "fuzz_pack")


def main() -> None:
    root = pathlib.Path(__file__).resolve().parent / "corpus"
    for t, target in enumerate(TARGETS):
        out = root / target
        out.mkdir(parents=True, exist_ok=True)
        rng = random.Random(t)
        seeds = {"zeros": bytes(64), "ones": b"\xff" * 64}
        for n in (16, 64, 256, 1024, 4096):
            seeds[f"random_{n}"] = bytes(rng.getrandbits(8) for _ in range(n))
        for name, data in seeds.items():
            (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
