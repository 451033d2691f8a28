"""Float NumPy layers and whole NumPy models, exported as lowbit.nn.Linear, Embedding, relu,
Model and Sequential.

A NumPy model is a forward function over a dict of named layers: `Model(forward, layers)` calls
`forward(layers, *inputs)`. Swapping the dict swaps the implementation, so the float model and
its quantized copy share one forward: `model.with_layers(lowbit.quantize_weights(model.layers,
config))`, and lowbit.report can compare the two layer by layer (it runs the float model with
recording layers in the dict to see what each layer is fed).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from .._core.checks import float_array, require_finite
from .embedding import check_indices


def _float_matrix(value: Any, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        raise ValueError(f"{what} must be a 2-D NumPy float32 array")
    a = float_array(value, what)
    require_finite(a, what)
    return a


class Linear:
    """Float32 y = x @ W.T + b, W of shape (out_features, in_features): the float layer a
    lowbit.nn.QuantizedLinear replaces (and the reference lowbit.report measures it against).

    Parameters
    ----------
    weight
        A 2-D float32 NumPy array (out_features, in_features), finite.
    bias
        None, or float32 (out_features,).

    Raises
    ------
    TypeError
        weight or bias is not float32 data.
    ValueError
        weight is not a 2-D NumPy array or holds NaN/Inf; a bias of another shape.
    """

    def __init__(self, weight: Any, bias: Any = None) -> None:
        self.weight = _float_matrix(weight, "weight")
        self.bias = None
        if bias is not None:
            b = float_array(bias, "bias")
            if b.shape != (self.out_features,):
                raise ValueError(f"bias must have shape ({self.out_features},), got {b.shape}")
            self.bias = b

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.weight.nbytes + (0 if self.bias is None else self.bias.nbytes))

    def __call__(self, x: Any) -> np.ndarray:
        """y = x @ W.T + b in float32 (NumPy's matmul).

        Parameters
        ----------
        x
            float32 (or float16, or Python numbers) input of shape (..., in_features).

        Returns
        -------
        numpy.ndarray
            float32 (..., out_features).

        Raises
        ------
        TypeError
            x is not float32/float16 data.
        ValueError
            x's last axis is not in_features (or x is 0-d).
        """
        xa = float_array(x, "x")
        if xa.ndim == 0 or xa.shape[-1] != self.in_features:
            raise ValueError(f"Linear takes inputs of shape (..., {self.in_features}), got "
                             f"{xa.shape}")
        y = xa @ self.weight.T
        if self.bias is not None:
            y += self.bias
        return y

    def __repr__(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None})")


class Embedding:
    """A float32 (num_embeddings, embedding_dim) table; a call gathers rows (the float layer a
    lowbit.nn.QuantizedEmbedding replaces).

    Parameters
    ----------
    weight
        A 2-D float32 NumPy array (num_embeddings, embedding_dim), finite.

    Raises
    ------
    TypeError
        weight is not float32 data.
    ValueError
        weight is not a 2-D NumPy array or holds NaN/Inf.
    """

    def __init__(self, weight: Any) -> None:
        self.weight = _float_matrix(weight, "weight")

    @property
    def num_embeddings(self) -> int:
        return int(self.weight.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.weight.nbytes)

    def __call__(self, indices: Any) -> np.ndarray:
        """The rows of `indices`.

        Parameters
        ----------
        indices
            Integer indices of any shape, each in [0, num_embeddings) (no negative indexing).

        Returns
        -------
        numpy.ndarray
            float32 (*indices.shape, embedding_dim).

        Raises
        ------
        TypeError
            indices are not integers.
        IndexError
            An index outside [0, num_embeddings).
        """
        return self.weight[check_indices(indices, self.num_embeddings)]

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), keeping float32 (a module-level function, so a Sequential holding it
    pickles).

    Parameters
    ----------
    x
        A float32 array (or anything numpy.maximum takes).

    Returns
    -------
    numpy.ndarray
        max(x, 0) elementwise, x's shape and (for float32 x) dtype.

    Raises
    ------
    None
        Only what numpy.maximum raises for input it cannot take.
    """
    return np.maximum(x, np.float32(0))


# lowbit's own functions a model may hold as entries: lowbit.save stores them by these names
# (any other function is code, which a file of tensors cannot hold).
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"relu": relu}


def function_name(value: Any) -> Union[str, None]:
    """The FUNCTIONS name of `value`, or None if it is not one of lowbit's own functions."""
    return next((name for name, f in FUNCTIONS.items() if f is value), None)


def nbytes_of(value: Any) -> int:
    """Bytes a layer-dict entry holds: its `nbytes` (arrays, lowbit and float layers, nested
    models), 0 for functions and anything else."""
    n = getattr(value, "nbytes", 0)
    return int(n) if isinstance(n, (int, np.integer)) else 0


class Model:
    """A NumPy model: `forward(layers, *inputs, **kw_inputs)` over a dict of named layers
    (anything callable, lowbit layers included, and plain arrays the forward reads).

    The forward must reach the layers through the dict it is given (not a global or a
    closure): that is how `with_layers` swaps in quantized layers and how lowbit.report sees
    each layer's input.

    Parameters
    ----------
    forward
        forward(layers, *inputs, **kw_inputs) -> outputs.
    layers
        A mapping of str names to layers and arrays (copied into a new dict, `layers`).

    Raises
    ------
    TypeError
        forward is not callable; layers is not a mapping, or has a name that is not a str.
    """

    def __init__(self, forward: Callable[..., Any], layers: Mapping[str, Any]) -> None:
        if not callable(forward):
            raise TypeError(f"forward must be callable, got {type(forward).__name__}")
        if not isinstance(layers, Mapping):
            raise TypeError(f"layers must be a dict of named layers, got "
                            f"{type(layers).__name__}")
        bad = [k for k in layers if not isinstance(k, str)]
        if bad:
            raise TypeError(f"layer names must be strings, got {bad[:3]!r}")
        self.forward = forward
        self.layers = dict(layers)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """forward(self.layers, *args, **kwargs).

        Parameters
        ----------
        *args, **kwargs
            The model's inputs, passed on to forward.

        Returns
        -------
        object
            What forward returns.

        Raises
        ------
        Exception
            Whatever forward (or a layer it calls) raises.
        """
        return self.forward(self.layers, *args, **kwargs)

    def with_layers(self, layers: Mapping[str, Any]) -> "Model":
        """The same forward over other layers (e.g. quantize_weights(self.layers, config)).

        Parameters
        ----------
        layers
            A mapping of str names to layers, typically with this model's names.

        Returns
        -------
        Model
            A new model; this one is unchanged.

        Raises
        ------
        TypeError
            layers is not a mapping, or has a name that is not a str.
        """
        return Model(self.forward, layers)

    @property
    def nbytes(self) -> int:
        """Bytes of every layer and array in the dict (an object held under two names once)."""
        unique = {id(v): v for v in self.layers.values()}
        return sum(nbytes_of(v) for v in unique.values())

    def __repr__(self) -> str:
        names = ", ".join(self.layers)
        return f"Model({getattr(self.forward, '__name__', 'forward')}, layers: {names})"


def run_in_order(layers: Mapping[str, Callable[[Any], Any]], x: Any) -> Any:
    """Sequential's forward: each layer of the dict, in its order, on the previous output."""
    for layer in layers.values():
        x = layer(x)
    return x


class Sequential(Model):
    """Layers applied in order: Sequential({"fc1": Linear(w1, b1), "act": relu, "fc2": ...}), or
    a list (named "0", "1", ...). Every entry must be callable.

    Parameters
    ----------
    layers
        A mapping of names to callables (in the order to apply), or a sequence of callables.

    Raises
    ------
    TypeError
        An entry is not callable (the message lists their names), or a name is not a str.
    """

    def __init__(self, layers: Union[Mapping[str, Callable[[Any], Any]],
                                     Sequence[Callable[[Any], Any]]]) -> None:
        named = (dict(layers) if isinstance(layers, Mapping)
                 else {str(i): layer for i, layer in enumerate(layers)})
        not_callable = [k for k, v in named.items() if not callable(v)]
        if not_callable:
            raise TypeError(f"Sequential entries must be callable; not: {not_callable}")
        super().__init__(run_in_order, named)

    def with_layers(self, layers: Mapping[str, Any]) -> "Sequential":
        """A Sequential of other layers, applied in `layers`' order.

        Parameters
        ----------
        layers
            A mapping of names to callables, typically with this model's names.

        Returns
        -------
        Sequential
            A new model; this one is unchanged.

        Raises
        ------
        TypeError
            An entry is not callable, or a name is not a str.
        """
        return Sequential(layers)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {getattr(v, '__name__', None) or repr(v)}"   # functions by name
                          for k, v in self.layers.items())
        return f"Sequential({inner})"
