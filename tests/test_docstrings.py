"""The public API documents itself the NumPy way: every public function, class and public method
defined in lowbit (the names of lowbit.__all__, lowbit.nn.__all__, lowbit.observers and, with
PyTorch, lowbit.torch.__all__, with transformers, lowbit.hf.__all__, plus the configs' base
QuantConfig) has a docstring with

- a Parameters section naming each parameter (other than self / cls) when it takes any (a
  class: its constructor's), and no name the signature does not have,
- a Returns section unless it is a class or annotated `-> None`,
- a Raises section (what it raises, and when; or that it raises nothing of its own).

Methods are a class's public functions, staticmethods and classmethods (properties are
attributes, not checked) plus `__call__`, taken from every lowbit class of its MRO and checked
once where they are defined. A planted module shows the walker reports what it must."""
from __future__ import annotations

import inspect
import re
import types
from typing import Any, Callable, Iterator

import pytest

import lowbit
import lowbit.nn
import lowbit.quant.observers
from lowbit.quant.config import QuantConfig

# A section header, after inspect.cleandoc: its title on one line, dashes under it.
_HEADER = re.compile(r"^([A-Z][A-Za-z ]*)\n-{3,}[ \t]*$", re.M)


def sections(doc: str) -> dict[str, str]:
    """Section title -> the text under it, for a NumPy-style docstring."""
    doc = inspect.cleandoc(doc)
    found = list(_HEADER.finditer(doc))
    return {m.group(1).strip(): doc[m.end():(found[i + 1].start() if i + 1 < len(found)
                                             else len(doc))]
            for i, m in enumerate(found)}


def documented_names(parameters_section: str) -> set[str]:
    """The names a Parameters section documents: its unindented lines ('x', 'x : float32
    array', 'scale, zero_point, axis'), stars dropped ('*args, **kwargs')."""
    names: set[str] = set()
    for line in parameters_section.splitlines():
        if not line.strip() or line[0].isspace():
            continue
        head = line.split(" : ")[0]
        names.update(part.strip().lstrip("*") for part in head.split(",") if part.strip())
    return names


def _defined_in_lowbit(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "lowbit" or module.startswith("lowbit.")


# Public by name but not API: nn.Module's hook for the module's line in print(model).
NOT_API = {"extra_repr"}


def _methods(cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """(name, function) of the public methods (and `__call__`) of cls's lowbit classes."""
    for klass in cls.__mro__:
        if not _defined_in_lowbit(klass):
            continue
        for name, raw in vars(klass).items():
            if (name.startswith("_") and name != "__call__") or name in NOT_API:
                continue
            func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if inspect.isfunction(func):
                yield f"{klass.__qualname__}.{name}", func


def public_api(namespaces: list[tuple[str, Any]], extra: tuple[Any, ...] = ()
               ) -> list[tuple[str, Any]]:
    """(qualified name, object) of every public function, class and method the namespaces'
    __all__ name (modules among them are walked through their own entry) and `extra`, each
    object once; names and values that are not lowbit's own (constants, typing aliases,
    re-exported modules) are left out."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def add(name: str, obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        found.append((name, obj))
        if inspect.isclass(obj):
            for method_name, func in _methods(obj):
                add(f"{obj.__module__}.{method_name}", func)

    objects = [(f"{prefix}.{name}", getattr(module, name))
               for prefix, module in namespaces for name in module.__all__]
    objects += [(f"{obj.__module__}.{obj.__qualname__}", obj) for obj in extra]
    for name, obj in objects:
        if inspect.ismodule(obj) or not callable(obj) or not _defined_in_lowbit(obj):
            continue
        add(name, obj)
    return found


def _returns_nothing(func: Callable[..., Any]) -> bool:
    annotation = inspect.signature(func).return_annotation
    return annotation in (None, "None", type(None))


def problems(name: str, obj: Any) -> list[str]:
    """What the docstring of `obj` lacks ([] when it is complete)."""
    doc = obj.__doc__ if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and doc and re.fullmatch(rf"{obj.__name__}\(.*\)", doc.strip()):
        doc = None   # the signature a dataclass writes when the class has no docstring
    if not doc:
        return [f"{name}: no docstring"]
    found = sections(doc)
    out = []
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):   # a class without a Python __init__ of its own
        signature = inspect.Signature()
    params = [p for p in signature.parameters
              if not (p in ("self", "cls") and not inspect.isclass(obj))]
    if params and "Parameters" not in found:
        out.append(f"{name}: no Parameters section")
    elif "Parameters" in found:
        names = documented_names(found["Parameters"])
        undocumented = [p for p in params if p not in names]
        if undocumented:
            out.append(f"{name}: no Parameters entry for {', '.join(undocumented)}")
        stale = sorted(names - set(params))
        if stale:
            out.append(f"{name}: Parameters documents {', '.join(stale)}, which the signature "
                       "does not have")
    if not inspect.isclass(obj) and not _returns_nothing(obj) and "Returns" not in found:
        out.append(f"{name}: no Returns section")
    if "Raises" not in found:
        out.append(f"{name}: no Raises section")
    return out


def _report(api: list[tuple[str, Any]]) -> list[str]:
    return [p for name, obj in api for p in problems(name, obj)]


NUMPY_NAMESPACES = [("lowbit", lowbit), ("lowbit.nn", lowbit.nn),
                    ("lowbit.observers", lowbit.quant.observers)]


def test_numpy_api_docstrings_have_numpy_sections() -> None:
    api = public_api(NUMPY_NAMESPACES, extra=(QuantConfig,))
    names = {name for name, _ in api}
    # the walk reaches what it must (functions, classes, classmethods, inherited config methods)
    for expected in ("lowbit.quantize_linear", "lowbit.PackedWeight", "lowbit.nn.QuantizedLinear",
                     "lowbit.nn.linear.QuantizedLinear.from_config",
                     "lowbit.quant.config.QuantConfig.plan",
                     "lowbit.quant.observers.Observer.calculate_qparams",
                     "lowbit.observers.HistogramObserver"):
        assert expected in names, expected
    assert not _report(api), "\n" + "\n".join(_report(api))


def test_torch_api_docstrings_have_numpy_sections() -> None:
    pytest.importorskip("torch")
    import lowbit.torch
    api = public_api([("lowbit.torch", lowbit.torch)])
    names = {name for name, _ in api}
    for expected in ("lowbit.torch.quantize_", "lowbit.torch.QuantizedLinear",
                     "lowbit.torch.layers.QuantizedLinear.from_float"):
        assert expected in names, expected
    assert not _report(api), "\n" + "\n".join(_report(api))


def test_hf_api_docstrings_have_numpy_sections() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import lowbit.hf
    from lowbit.hf._quantizer import LowbitHfQuantizer
    api = public_api([("lowbit.hf", lowbit.hf)], extra=(LowbitHfQuantizer,))
    names = {name for name, _ in api}
    for expected in ("lowbit.hf.LowbitConfig", "lowbit.hf.config.LowbitConfig.quant_config",
                     "lowbit.hf._quantizer.LowbitHfQuantizer.validate_environment"):
        assert expected in names, expected
    assert not _report(api), "\n" + "\n".join(_report(api))


# ---- the walker itself: a planted module of documented and undocumented objects ------------

def _planted_module() -> types.ModuleType:
    module = types.ModuleType("lowbit._planted_docs")

    def documented(x: int, *, scale: float = 1.0) -> int:
        """Scales x.

        Parameters
        ----------
        x
            A value.
        scale
            The factor.

        Returns
        -------
        int

        Raises
        ------
        ValueError
            Never, in fact.
        """
        return int(x * scale)

    def undocumented(x: int) -> int:
        return x

    def no_returns(x: int) -> int:
        """Half documented.

        Parameters
        ----------
        x
            A value.

        Raises
        ------
        TypeError
            x is not an int.
        """
        return x

    def no_raises(x: int) -> int:
        """Says nothing of its errors.

        Parameters
        ----------
        x
            A value.

        Returns
        -------
        int
        """
        return x

    def missing_entry(x: int, y: int) -> None:
        """Names only x, and a z it does not take.

        Parameters
        ----------
        x
            A value.
        z
            Renamed long ago.

        Raises
        ------
        TypeError
            Always.
        """

    class Layer:
        """A layer.

        Parameters
        ----------
        width
            Its width.

        Raises
        ------
        ValueError
            width < 1.
        """

        def __init__(self, width: int) -> None:
            self.width = width

        @classmethod
        def build(cls, width: int) -> "Layer":
            return cls(width)

    for obj in (documented, undocumented, no_returns, no_raises, missing_entry, Layer):
        obj.__module__ = module.__name__
        obj.__qualname__ = obj.__name__
        setattr(module, obj.__name__, obj)
    module.__all__ = ["documented", "undocumented", "no_returns", "no_raises", "missing_entry",
                      "Layer", "CONSTANT"]
    module.CONSTANT = 3   # type: ignore[attr-defined]
    return module


def test_walker_reports_planted_undocumented_objects() -> None:
    """The complete function, the class without Returns, the `-> None` function without
    Returns and the constant pass; everything else is reported."""
    reported = _report(public_api([("planted", _planted_module())]))
    assert reported == [
        "planted.undocumented: no docstring",
        "planted.no_returns: no Returns section",
        "planted.no_raises: no Raises section",
        "planted.missing_entry: no Parameters entry for y",
        "planted.missing_entry: Parameters documents z, which the signature does not have",
        "lowbit._planted_docs.Layer.build: no docstring",
    ]
