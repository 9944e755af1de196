"""The ``tensorrt`` executor: serialized TensorRT engines on an NVIDIA GPU.

Engines are built by :func:`build_engine` from the variant's ONNX file with one optimisation
profile (batch 1 to the engine's max batch), in fp32, fp16 (``BuilderFlag.FP16``) or int8.
Int8 uses explicit quantisation: the input is the static-quantised QDQ ONNX model
(calibrated by onnxruntime on the sample inputs), which TensorRT honours with
``BuilderFlag.INT8`` — the route NVIDIA recommends since TensorRT 10 deprecated implicit
calibration (TensorRT developer guide, "Explicit vs Implicit Quantization").

Device buffers are torch CUDA tensors (``tensorrt`` brings no allocator of its own); the
runner sets tensor addresses and runs ``execute_async_v3`` on its own CUDA stream, one stream
per loaded instance, so co-located instances overlap on the GPU as CUDA streams do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from infaas_sim.executor import register_executor
from infaas_sim.realtime import RunnerExecutor, register_builder, register_runner


def trt_absent() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install tensorrt; needs an NVIDIA GPU and driver)"
    try:
        import torch
    except ImportError:
        return "the tensorrt executor allocates device buffers with torch (pip install torch with CUDA)"
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    return None


def _logger() -> Any:
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


@register_builder("tensorrt")
def build_engine(onnx_path: Path, out_path: Path, precision: str, max_batch: int, workspace_mb: int = 1024) -> Path:
    """Build and serialize an engine for batches 1..``max_batch`` (optimised for ``max_batch``)."""
    import tensorrt as trt

    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    logger = _logger()
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; older versions need the flag.
    flags = (
        0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    )
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers without Q/DQ may still use fp16
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    shape = tuple(inp.shape)[1:]
    profile.set_shape(inp.name, (1, *shape), (max_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} ({precision}, max batch {max_batch})")
    out_path.write_bytes(bytes(serialized))
    return out_path


class TrtModelRunner:
    """One deserialized engine, its execution context, stream and device buffers."""

    def __init__(self, engine_path: Path, max_batch: int, device: int = 0) -> None:
        import tensorrt as trt
        import torch

        self.torch = torch
        self.device = torch.device("cuda", device)
        self.runtime = trt.Runtime(_logger())
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"could not deserialize TensorRT engine {engine_path}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name, self.output_name = inputs[0], outputs[0]
        in_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        out_shape = tuple(self.engine.get_tensor_shape(self.output_name))
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in in_shape[1:])
        self.max_batch = max_batch
        # Synthetic inputs live on the device: serving measures the engine, not the PCIe copy.
        self.x = torch.rand((max_batch, *self.input_shape), device=self.device, dtype=torch.float32)
        self.y = torch.empty((max_batch, *[int(d) for d in out_shape[1:]]), device=self.device, dtype=torch.float32)
        torch.cuda.synchronize(self.device)  # the buffers are filled on the default stream

    def _execute(self, x: Any, n: int) -> Any:
        # PyTorch's side streams do not wait for the default stream, where ``run`` copied x.
        self.stream.wait_stream(self.torch.cuda.current_stream(self.device))
        self.context.set_input_shape(self.input_name, (n, *self.input_shape))
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, self.y.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        return self.y[:n]

    def run(self, inputs: np.ndarray) -> np.ndarray:
        x = self.torch.from_numpy(np.ascontiguousarray(inputs, np.float32)).to(self.device)
        return np.asarray(self._execute(x, len(inputs)).cpu().numpy())

    def run_batch(self, n: int) -> float:
        if n > self.max_batch:
            raise ValueError(f"batch of {n} exceeds the engine's max batch {self.max_batch}")
        t0 = time.perf_counter()
        self._execute(self.x[:n], n)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.context = None
        self.engine = None


@register_runner("tensorrt", trt_absent)
def _open(path: Path, cores: float, max_batch: int, options: dict[str, str]) -> TrtModelRunner:
    return TrtModelRunner(path, max_batch, int(options.get("device", "0")))


@register_executor("tensorrt")
class TensorRTExecutor(RunnerExecutor):
    """Batches on TensorRT engines, one execution context and stream per loaded instance."""

    backend = "tensorrt"
