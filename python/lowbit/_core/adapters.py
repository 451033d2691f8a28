"""Adapters for other libraries' objects (PyTorch modules and tensors), so that the floors of
lowbit below `lowbit.torch` can take them without importing it.

A concern that must handle such objects (`lowbit.io`'s save and load, `lowbit.report`) asks
`find(concern, obj)`; `lowbit.torch` registers its adapters (`register`) when it is imported.
Nothing below `lowbit.torch` imports it, not even inside a function: the package's top floor
(`lowbit/__init__.py`) registers a loader per library (`register_loader("torch", ...)`), and the
first object of that library without an adapter makes `find` call the loader, which imports
the adapter package. So `lowbit.load(path, float_torch_model)` works without the caller having
imported `lowbit.torch` first, and the import still points down the house.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

_ADAPTERS: dict[str, list[Any]] = {}          # concern -> adapters, in registration order
_LOADERS: dict[str, Callable[[], None]] = {}  # library (top-level module name) -> loader


def register(concern: str, adapter: Any) -> None:
    """Adds `adapter` for `concern` ("io", "report"). An adapter has `claims(obj) -> bool`
    and the methods its concern calls (see lowbit.io and lowbit.report)."""
    adapters = _ADAPTERS.setdefault(concern, [])
    if adapter not in adapters:
        adapters.append(adapter)


def register_loader(library: str, loader: Callable[[], None]) -> None:
    """`loader()` imports the adapters of `library` (which register themselves)."""
    _LOADERS[library] = loader


def library_of(obj: Any) -> Optional[str]:
    """The library (with a registered loader) that one of obj's classes comes from, or None:
    a user's torch.nn.Module subclass is defined in the user's module, so every class of its
    MRO is looked at."""
    for cls in type(obj).__mro__:
        top = (getattr(cls, "__module__", "") or "").split(".")[0]
        if top in _LOADERS:
            return top
    return None


def find(concern: str, obj: Any) -> Optional[Any]:
    """The adapter of `concern` that claims `obj`, loading the adapters of obj's library once
    if none does yet; None for an object no adapter takes (a NumPy model, an array)."""
    for adapter in _ADAPTERS.get(concern, ()):
        if adapter.claims(obj):
            return adapter
    library = library_of(obj)
    if library is None:
        return None
    _LOADERS.pop(library)()   # imports the library's adapters; only ever tried once
    return find(concern, obj)


def adapters(concern: str) -> list[Any]:
    """Every adapter registered for `concern` (loaded ones only)."""
    return list(_ADAPTERS.get(concern, ()))
