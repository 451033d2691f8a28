"""The package's floors: every import in python/lowbit (module level or inside a function)
points to the same floor or down, no modules import each other in a circle, nothing below
lowbit.torch imports PyTorch or lowbit.torch, and nothing but lowbit.hf imports transformers,
sentence-transformers or lowbit.hf. docs/design.md ("Map of the code") draws the same floors;
run `python -m pytest tests/test_layers.py -q` after moving code.

Floors, bottom first (a floor may hold several packages that do not import each other in a
circle):"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import lowbit

FLOORS = [
    ["_core"],                 # checks, layout, nibbles, runtime, adapters, version, the extension
    ["ops"],                   # ONNX primitives on arrays
    ["qtensor"],               # QTensor, quantize
    ["packed", "quant"],       # PackedWeight / pack_weight; configs, observers, plans, summaries
    ["packed_ops"],            # linear, linear_static, matmul_integer on packed weights
    ["nn"],                    # NumPy layers and models, quantize_weights
    ["io", "report"],          # save / load; report
    ["torch"],                 # PyTorch layers and conversion (registers io / report adapters)
    ["hf"],                    # the transformers quantizer (LowbitConfig); nothing imports it
    ["__init__"],              # the public namespace
    ["benchmark", "demo"],
    ["cli", "__main__"],
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
ROOT = Path(lowbit.__file__).resolve().parent
# Libraries only one floor of lowbit may import, by the import names that stand for them.
HF_LIBRARIES = ("transformers", "sentence_transformers")


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["lowbit"] + parts)] = path
    return out


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOOR["__init__"] if len(parts) == 1 else FLOOR.get(parts[1], -1)


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported lowbit module, 'torch' or 'transformers', line) for every import statement of
    the file (sentence-transformers counts as 'transformers')."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # from . import X: X may be a module (then the package itself is not what is used)
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found.extend((sub, node.lineno) for sub in subs)
            if len(subs) < len(node.names):
                found.append((target, node.lineno))
    result = []
    for name, line in found:
        if name == "torch" or name.startswith("torch."):
            result.append(("torch", line))
        elif name.split(".")[0] in HF_LIBRARIES:
            result.append(("transformers", line))
        elif name == "lowbit" or name.startswith("lowbit."):
            # the module itself, or the package that holds the imported name
            while name not in known and "." in name:
                name = name.rpartition(".")[0]
            if name in known and name != module:
                result.append((name, line))
    return result


def _graph(root: Path) -> dict[str, list[tuple[str, int]]]:
    mods = _modules(root)
    known = set(mods) | {"lowbit._core._C"}
    return {m: _imports(m, p, known) for m, p in mods.items()}


EXTERNAL = ("torch", "transformers", "lowbit._core._C")   # imports that have no floor


def outside_floors(root: Path = ROOT) -> list[str]:
    return sorted(m for m in _modules(root) if _floor(m) < 0)


def upward_imports(root: Path = ROOT) -> list[str]:
    return [f"{module}:{line} imports {target}" for module, imports in _graph(root).items()
            for target, line in imports
            if target not in EXTERNAL and _floor(target) > _floor(module)]


def pytorch_below_torch(root: Path = ROOT) -> list[str]:
    return [f"{m}:{line} imports {t}" for m, imports in _graph(root).items() for t, line in imports
            if _floor(m) < FLOOR["torch"] and (t == "torch" or t.startswith("lowbit.torch"))]


def transformers_outside_hf(root: Path = ROOT) -> list[str]:
    return [f"{m}:{line} imports {t}" for m, imports in _graph(root).items() for t, line in imports
            if not m.startswith("lowbit.hf") and (t == "transformers" or t.startswith("lowbit.hf"))]


def circles(root: Path = ROOT) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted({t for t, _ in imps if t not in ("torch", "transformers")})
             for m, imps in _graph(root).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_floor():
    assert not outside_floors(), "modules outside FLOORS (add them): " + str(outside_floors())


def test_imports_point_down():
    up = upward_imports()
    assert not up, "imports of a higher floor:\n" + "\n".join(up)


def test_nothing_below_lowbit_torch_imports_pytorch():
    bad = pytorch_below_torch()
    assert not bad, "\n".join(bad)


def test_only_lowbit_hf_imports_transformers():
    bad = transformers_outside_hf()
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    assert not circles(), f"modules that import each other in a circle: {circles()}"


def test_the_checks_see_planted_faults(tmp_path):
    """An upward import inside a function, PyTorch imported below lowbit.torch, transformers
    imported outside lowbit.hf and a circle, planted in a small fake package: each check
    reports it (the tests above cannot pass vacuously)."""
    fake = tmp_path / "lowbit"
    (fake / "_core").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "_core" / "__init__.py").write_text("")
    (fake / "_core" / "bad.py").write_text("def f():\n    from ..nn import QuantizedLinear\n")
    (fake / "_core" / "uses_torch.py").write_text("import torch\n")
    (fake / "_core" / "a.py").write_text("from . import b\n")
    (fake / "_core" / "b.py").write_text("from .a import x\n")
    (fake / "nn.py").write_text("QuantizedLinear = 1\n")
    (fake / "torch").mkdir()
    (fake / "torch" / "__init__.py").write_text("def f():\n    import transformers\n")
    (fake / "hf").mkdir()
    (fake / "hf" / "__init__.py").write_text("import transformers\nfrom ..torch import f\n")
    assert upward_imports(fake) == ["lowbit._core.bad:2 imports lowbit.nn"]
    assert pytorch_below_torch(fake) == ["lowbit._core.uses_torch:1 imports torch"]
    assert transformers_outside_hf(fake) == ["lowbit.torch:2 imports transformers"]
    assert circles(fake) == [["lowbit._core.a", "lowbit._core.b"]]
