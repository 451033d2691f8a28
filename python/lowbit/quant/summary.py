"""ConversionSummary: what a conversion (lowbit.torch.quantize_, prepare, convert, or
lowbit.quantize_weights) replaced, what it skipped, and why. No PyTorch needed."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Replaced:
    name: str
    kind: str                   # "linear", "conv", "embedding", "observed", "fake_quant"
    shape: tuple[int, ...]      # (out_features, in_features), (rows, dim) or a conv weight's
    config: str
    bytes_before: int
    bytes_after: int
    note: str = ""


@dataclass
class Skipped:
    name: str
    reason: str


@dataclass
class Kept:
    """A module holding weight matrices that the conversion does not touch (a Conv2d, an LSTM,
    an nn.EmbeddingBag, ...): it stays in float, for `reason`."""
    name: str
    kind: str                   # the module's class name
    reason: str


@dataclass
class ConversionSummary:
    """What a conversion did, returned by lowbit.torch.quantize_, prepare, prepare_qat and
    convert (and as lowbit.quantize_weights' `.summary`); str() is the table.

    Parameters
    ----------
    action
        The conversion's name, for the table's first line.
    replaced
        A Replaced per layer it replaced (name, kind, shape, config, bytes before / after,
        note).
    skipped
        A Skipped per candidate layer it kept as it was, with the reason.
    kept
        A Kept per other module holding weight matrices that stays float, with the reason.

    Raises
    ------
    None
        A plain record.
    """

    action: str = "quantize_"
    replaced: list[Replaced] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)

    @property
    def replaced_names(self) -> list[str]:
        return [r.name for r in self.replaced]

    @property
    def skipped_names(self) -> list[str]:
        return [s.name for s in self.skipped]

    @property
    def kept_names(self) -> list[str]:
        return [k.name for k in self.kept]

    def reason(self, name: str) -> str:
        """Why the layer `name` was skipped.

        Parameters
        ----------
        name
            A name of `skipped_names`.

        Returns
        -------
        str
            The reason recorded for it.

        Raises
        ------
        KeyError
            No skipped layer has that name.
        """
        for s in self.skipped:
            if s.name == name:
                return s.reason
        raise KeyError(name)

    def __str__(self) -> str:
        before = sum(r.bytes_before for r in self.replaced)
        after = sum(r.bytes_after for r in self.replaced)
        kept = (f", {len(self.kept)} other weight-holding module(s) kept float" if self.kept
                else "")
        lines = [f"lowbit {self.action}: {len(self.replaced)} replaced, "
                 f"{len(self.skipped)} skipped{kept}; replaced layers {before / 2**20:.2f} MiB "
                 f"-> {after / 2**20:.2f} MiB"]
        width = max([len(r.name) for r in self.replaced] + [len(s.name) for s in self.skipped]
                    + [len(k.name or "(model)") for k in self.kept] + [4])
        shape_width = max([len("x".join(map(str, r.shape))) for r in self.replaced] + [1])
        for r in self.replaced:
            note = f"  [{r.note}]" if r.note else ""
            shape = "x".join(map(str, r.shape)).ljust(shape_width)
            lines.append(f"  + {r.name.ljust(width)}  {shape}  {r.config}{note}")
        for s in self.skipped:
            lines.append(f"  - {s.name.ljust(width)}  skipped: {s.reason}")
        for k in self.kept:
            lines.append(f"  = {(k.name or '(model)').ljust(width)}  {k.kind} kept float: "
                         f"{k.reason}")
        return "\n".join(lines)
