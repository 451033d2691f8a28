"""ONNX models and ONNX Runtime sessions for the ONNX Runtime methods (int8 and 4-bit).

onnx and onnxruntime are imported inside the functions: the harness must import without them.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Optional, Sequence

import numpy as np

ORT_INTEGER_OPS = {"DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat"}
ORT_FLOAT_MATMUL_OPS = {"MatMul", "Gemm", "FusedMatMul", "FusedGemm"}


def _onnx_model(nodes: list[Any], inputs: list[Any], outputs: list[Any],
                initializers: list[Any]) -> Any:
    from onnx import helper
    graph = helper.make_graph(nodes, "lowbit_bench", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8   # old enough for any onnxruntime that runs opset 17
    return model


def float_linear_model(wt: np.ndarray, b: np.ndarray) -> Any:
    """Y = X @ W + B, W (K, N) and B as initializers, M left symbolic."""
    from onnx import TensorProto, helper, numpy_helper
    K, N = wt.shape
    return _onnx_model(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", K])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", N])],
        [numpy_helper.from_array(np.ascontiguousarray(wt), "W"), numpy_helper.from_array(b, "B")])


def matmul_integer_model(bt: np.ndarray) -> Any:
    """Y = MatMulInteger(A, B, 0, 0): A uint8 (M, K) input, B int8 (K, N) initializer."""
    from onnx import TensorProto, helper, numpy_helper
    K, N = bt.shape
    return _onnx_model(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zero_point", "b_zero_point"], ["Y"])],
        [helper.make_tensor_value_info("A", TensorProto.UINT8, ["M", K])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, ["M", N])],
        [numpy_helper.from_array(np.ascontiguousarray(bt), "B"),
         numpy_helper.from_array(np.array(0, np.uint8), "a_zero_point"),
         numpy_helper.from_array(np.array(0, np.int8), "b_zero_point")])


def _op_types(model: Any) -> list[str]:
    return [node.op_type for node in model.graph.node]


def _require_integer_ops(ops: Sequence[str], what: str) -> None:
    if not ORT_INTEGER_OPS & set(ops) or ORT_FLOAT_MATMUL_OPS & set(ops):
        raise RuntimeError(f"{what} is not an int8 GEMM model: nodes {ops}")


def _ort_session(model_path: str, threads: int, shared_pool: bool,
                 optimized_path: Optional[str]) -> Any:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Cold mode holds one session per weight copy: each with its own pool, the idle pools' spinning
    # threads would steal the cores from the running one, so they share the global pool instead.
    options.use_per_session_threads = not shared_pool
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def ort_sessions(models: Callable[[int], Any], copies: int, threads: int,
                 quantize: bool) -> tuple[list[Any], dict[str, Any]]:
    """Sessions for models(0..copies-1) (quantized first if asked), after checking that the
    saved and the optimized graphs really compute with integer GEMM ops."""
    import onnx
    import onnxruntime as ort
    ort.set_default_logger_severity(3)
    if copies > 1:
        from onnxruntime.capi import _pybind_state
        _pybind_state.set_global_thread_pool_sizes(threads, 1)  # before the first session
    sessions, info = [], {}
    with tempfile.TemporaryDirectory(prefix="lowbit_bench_") as tmp:
        float_path, model_path = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "model.onnx")
        optimized_path = os.path.join(tmp, "optimized.onnx")
        for i in range(copies):
            if quantize:
                from onnxruntime.quantization import QuantType, quantize_dynamic
                onnx.save(models(i), float_path)
                quantize_dynamic(float_path, model_path, per_channel=False,
                                 weight_type=QuantType.QInt8)
            else:
                onnx.save(models(i), model_path)
            sessions.append(_ort_session(model_path, threads, copies > 1,
                                         optimized_path if i == 0 else None))
            if i == 0:
                saved, optimized = _op_types(onnx.load(model_path)), _op_types(onnx.load(optimized_path))
                _require_integer_ops(saved, "the saved model")
                _require_integer_ops(optimized, "the optimized model")
                info = {"ort_nodes": saved, "ort_optimized_nodes": optimized}
    return sessions, info


def matmul_nbits_model(q: np.ndarray, scale: np.ndarray, group: int, accuracy_level: int) -> Any:
    """Y = MatMulNBits(X, W) (com.microsoft), 4-bit symmetric: q (N, K) int4 values in [-8, 7]
    stored as q + 8 (the op's default zero point), two per byte, the even k in the low nibble;
    scale (N, K / group). accuracy_level 0 computes in float32, 4 with int8 activations."""
    from onnx import TensorProto, helper, numpy_helper
    N, K = q.shape
    blocks = K // group
    u = (q.astype(np.int16) + 8).astype(np.uint8).reshape(N, blocks, group)
    packed = (u[:, :, 0::2] | (u[:, :, 1::2] << 4)).astype(np.uint8)  # (N, blocks, group / 2)
    node = helper.make_node("MatMulNBits", ["X", "W", "scales"], ["Y"], domain="com.microsoft",
                            K=K, N=N, bits=4, block_size=group, accuracy_level=accuracy_level)
    graph = helper.make_graph(
        [node], "lowbit_bench_nbits",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", K])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", N])],
        [numpy_helper.from_array(np.ascontiguousarray(packed), "W"),
         numpy_helper.from_array(np.ascontiguousarray(scale.reshape(-1)), "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def nbits_sessions(models: Callable[[int], Any], copies: int, threads: int) -> list[Any]:
    """Sessions for MatMulNBits models(0..copies-1) (no graph check: the op is 4-bit itself)."""
    import onnx
    import onnxruntime as ort
    ort.set_default_logger_severity(3)
    if copies > 1:
        from onnxruntime.capi import _pybind_state
        _pybind_state.set_global_thread_pool_sizes(threads, 1)
    sessions = []
    with tempfile.TemporaryDirectory(prefix="lowbit_bench_") as tmp:
        path = os.path.join(tmp, "model.onnx")
        for i in range(copies):
            onnx.save(models(i), path)
            sessions.append(_ort_session(path, threads, copies > 1, None))
    return sessions


# ----------------------------------------------------------------------------- convolutions
# `shape` is a methods_conv.ConvShape (C, H, W, k, stride, pad, groups); the batch stays symbolic.


def _conv_attrs(shape: Any) -> dict[str, Any]:
    p, s = shape.pad, shape.stride
    return {"kernel_shape": [shape.k, shape.k], "strides": [s, s], "pads": [p, p, p, p],
            "dilations": [1, 1], "group": shape.groups}


def _conv_model(node: Any, shape: Any, x_type: int, y_type: int, initializers: list[Any]) -> Any:
    from onnx import helper
    return _onnx_model([node],
                       [helper.make_tensor_value_info("X", x_type, ["N", shape.C, shape.H, shape.W])],
                       [helper.make_tensor_value_info("Y", y_type, None)], initializers)


def conv_float_model(w: np.ndarray, b: np.ndarray, shape: Any) -> Any:
    """Y = Conv(X, W, B): float32, W (M, C / group, k, k) and B initializers."""
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], **_conv_attrs(shape))
    return _conv_model(node, shape, TensorProto.FLOAT, TensorProto.FLOAT,
                       [numpy_helper.from_array(np.ascontiguousarray(w), "W"),
                        numpy_helper.from_array(b, "B")])


def conv_integer_model(q: np.ndarray, x_zero: int, shape: Any) -> Any:
    """Y = ConvInteger(X, W, x_zero_point): uint8 X, int8 W initializer (zero point 0), int32 Y."""
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("ConvInteger", ["X", "W", "x_zero_point"], ["Y"], **_conv_attrs(shape))
    return _conv_model(node, shape, TensorProto.UINT8, TensorProto.INT32,
                       [numpy_helper.from_array(np.ascontiguousarray(q), "W"),
                        numpy_helper.from_array(np.array(x_zero, np.uint8), "x_zero_point")])


def qlinear_conv_model(q: np.ndarray, w_scale: np.ndarray, bias: np.ndarray, x_scale: float,
                       x_zero: int, y_scale: float, y_zero: int, shape: Any) -> Any:
    """Y = QLinearConv(X, ...): uint8 X (x_scale, x_zero), int8 W per output channel (w_scale,
    zero points 0), int32 B, uint8 Y (y_scale, y_zero); everything but X an initializer."""
    from onnx import TensorProto, helper, numpy_helper
    M = q.shape[0]
    names = ["X", "x_scale", "x_zero_point", "W", "w_scale", "w_zero_point", "y_scale",
             "y_zero_point", "B"]
    node = helper.make_node("QLinearConv", names, ["Y"], **_conv_attrs(shape))
    values = {"x_scale": np.array(x_scale, np.float32), "x_zero_point": np.array(x_zero, np.uint8),
              "W": np.ascontiguousarray(q), "w_scale": np.ascontiguousarray(w_scale, np.float32),
              "w_zero_point": np.zeros(M, np.int8), "y_scale": np.array(y_scale, np.float32),
              "y_zero_point": np.array(y_zero, np.uint8),
              "B": np.ascontiguousarray(bias, np.int32)}
    return _conv_model(node, shape, TensorProto.UINT8, TensorProto.UINT8,
                       [numpy_helper.from_array(v, k) for k, v in values.items()])


def conv_sessions(model: Any, threads: int) -> tuple[Any, dict[str, Any]]:
    """One session for a one-node conv model, and its saved and optimized node types (ONNX
    Runtime may rewrite a conv, e.g. to its NHWC contrib ops)."""
    import onnx
    import onnxruntime as ort
    ort.set_default_logger_severity(3)
    with tempfile.TemporaryDirectory(prefix="lowbit_bench_") as tmp:
        model_path, optimized_path = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "opt.onnx")
        onnx.save(model, model_path)
        session = _ort_session(model_path, threads, False, optimized_path)
        info = {"ort_nodes": _op_types(onnx.load(model_path)),
                "ort_optimized_nodes": _op_types(onnx.load(optimized_path))}
    return session, info
