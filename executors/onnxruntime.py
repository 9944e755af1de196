"""The ``onnxruntime`` executor: real ONNX Runtime CPU sessions, one per loaded instance.

:class:`OrtModelRunner` is the reusable part (the profiler and the ``ray`` executor's actors
use it): one ``InferenceSession`` with ``intra_op_num_threads`` = the instance's cores, run
on preallocated synthetic inputs. Options (from the catalog's ``options`` column):

- ``opt``: graph optimisation level at load, ``basic`` (what a plain ONNX export gets:
  constant folding and redundant-node removal) or ``all`` (ORT's extended and layout
  optimisations too; ``onnxruntime.GraphOptimizationLevel``);
- ``spin``: ``1`` lets idle intra-op threads spin-wait. Off by default: spinning threads burn
  the cores other instances and the serving loop need (ORT's
  ``session.intra_op.allow_spinning`` config key).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from infaas_sim.executor import register_executor
from infaas_sim.realtime import RunnerExecutor, register_runner, synthetic_inputs


def ort_absent() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install -e '.[real]')"
    return None


_OPT_LEVELS = ("disable", "basic", "extended", "all")


def session_options(cores: float, options: dict[str, str] | None = None) -> Any:
    """ORT session options for an instance with ``cores`` cores."""
    import onnxruntime as ort

    options = options or {}
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, round(cores))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = options.get("opt", "all")
    if level not in _OPT_LEVELS:
        raise ValueError(f"onnxruntime option opt must be one of {_OPT_LEVELS}, got {level!r}")
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.get("spin") == "1" else "0")
    so.log_severity_level = 3
    return so


class OrtModelRunner:
    """One ONNX Runtime CPU session and its synthetic inputs."""

    def __init__(
        self, model: Path | str | bytes, cores: float = 1, max_batch: int = 8, options: dict[str, str] | None = None
    ) -> None:
        import onnxruntime as ort

        src = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(src, sess_options=session_options(cores, options),
                                            providers=["CPUExecutionProvider"])  # fmt: skip
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        shape = inp.shape[1:]
        if not all(isinstance(d, int) for d in shape):
            raise ValueError(f"model input {inp.name} needs fixed dimensions after the batch, got {inp.shape}")
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in shape)
        dtype = np.float32 if inp.type == "tensor(float)" else np.float16 if inp.type == "tensor(float16)" else None
        if dtype is None:
            raise ValueError(f"model input {inp.name}: unsupported type {inp.type}")
        self.cores = cores
        self._inputs = synthetic_inputs(self.input_shape, max(1, max_batch), dtype=dtype)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(self.output_names[:1], {self.input_name: inputs})[0])

    def run_batch(self, n: int) -> float:
        if n > len(self._inputs):  # a query larger than the batcher's limit runs alone
            self._inputs = np.resize(self._inputs, (n, *self.input_shape))
        x = self._inputs[:n]
        t0 = time.perf_counter()
        self.session.run(self.output_names[:1], {self.input_name: x})
        return time.perf_counter() - t0

    def close(self) -> None:
        # Dropping the reference frees the session once any batch still running returns.
        self.session = None


@register_runner("onnxruntime", ort_absent)
def _open(path: Path, cores: float, max_batch: int, options: dict[str, str]) -> OrtModelRunner:
    return OrtModelRunner(path, cores, max_batch, options)


@register_executor("onnxruntime")
class OnnxRuntimeExecutor(RunnerExecutor):
    """Batches on ONNX Runtime CPU sessions in a thread pool (see :class:`RunnerExecutor`)."""

    backend = "onnxruntime"
