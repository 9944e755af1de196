"""The ``neuron`` executor: models compiled for AWS Inferentia NeuronCores.

Compilation (:func:`compile_neuron`) traces the registered PyTorch module at the variant's
max batch with the Neuron SDK and saves TorchScript:

- ``torch_neuronx`` (Inferentia2 / Trainium, SDK 2.x): ``torch_neuronx.trace`` at
  ceil(max batch / n) for a variant with n NeuronCores, loaded as ``torch_neuronx.DataParallel``
  over the n cores, which splits a batch along dim 0, one slice per core (the SDK's way to use
  several cores for one model; its docs: compile batch = inference batch / cores);
- ``torch_neuron`` (Inferentia1, the inf1 instances of the INFaaS evaluation):
  ``torch.neuron.trace`` with ``--neuroncore-pipeline-cores n`` (the compiler shards the model
  over n cores as a pipeline).

Inputs are padded to the compiled batch (Neuron graphs have static shapes), as Neuron serving
does. Without the SDK the backend is reported absent and the executor refuses to start.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from infaas_sim.executor import register_executor
from infaas_sim.realtime import RunnerExecutor, register_builder, register_runner


def _sdk() -> tuple[str, Any] | None:
    try:
        import torch_neuronx

        return "neuronx", torch_neuronx
    except ImportError:
        pass
    try:
        import torch_neuron

        return "neuron", torch_neuron
    except ImportError:
        return None


def neuron_absent() -> str | None:
    if _sdk() is None:
        return "the AWS Neuron SDK (torch_neuronx or torch_neuron) is not installed; it needs an Inferentia instance"
    return None


@register_builder("neuron")
def compile_neuron(module: Any, example: np.ndarray, out_path: Path, cores: int, max_batch: int) -> Path:
    """Trace ``module`` for batches of ``max_batch`` on ``cores`` NeuronCores; save TorchScript."""
    import torch

    sdk = _sdk()
    if sdk is None:
        raise RuntimeError(neuron_absent())
    kind, lib = sdk
    batch = math.ceil(max_batch / cores) if kind == "neuronx" else max_batch
    x = torch.from_numpy(np.resize(np.asarray(example, np.float32), (batch, *example.shape[1:])))
    module = module.eval()
    if kind == "neuronx":
        traced = lib.trace(module, x)
    else:
        # torch_neuron is what ``torch.neuron`` names once imported.
        traced = lib.trace(module, x, compiler_args=["--neuroncore-pipeline-cores", str(cores)])
    torch.jit.save(traced, str(out_path))
    return out_path


class NeuronModelRunner:
    """A compiled model on ``cores`` NeuronCores, padding batches to its compiled size."""

    def __init__(self, path: Path, cores: int, max_batch: int) -> None:
        import torch

        sdk = _sdk()
        if sdk is None:
            raise RuntimeError(neuron_absent())
        kind, lib = sdk
        self.torch = torch
        model = torch.jit.load(str(path))
        if kind == "neuronx" and cores > 1:
            model = lib.DataParallel(model, device_ids=list(range(cores)), dim=0)
        self.model = model
        self.max_batch = max_batch
        # The static batch a call runs: the compiled one, times the cores DataParallel spreads it on.
        self.padded = math.ceil(max_batch / cores) * cores if kind == "neuronx" else max_batch
        # TorchScript does not keep the traced example's shape: the generator writes it into
        # the variant's options (``shape=CxHxW``) and the factory sets it.
        self.input_shape: tuple[int, ...] = ()

    def set_shape(self, shape: tuple[int, ...]) -> None:
        self.input_shape = shape
        self.x = self.torch.rand((self.padded, *shape))

    def run(self, inputs: np.ndarray) -> np.ndarray:
        n = len(inputs)
        x = self.torch.from_numpy(np.resize(np.asarray(inputs, np.float32), (self.padded, *self.input_shape)))
        with self.torch.no_grad():
            return np.asarray(self.model(x)[:n].numpy())

    def run_batch(self, n: int) -> float:
        t0 = time.perf_counter()
        with self.torch.no_grad():
            self.model(self.x)  # a static-shape graph: a short batch runs padded
        return time.perf_counter() - t0

    def close(self) -> None:
        self.model = None


@register_runner("neuron", neuron_absent)
def _open(path: Path, cores: float, max_batch: int, options: dict[str, str]) -> NeuronModelRunner:
    runner = NeuronModelRunner(path, max(1, round(cores)), max_batch)
    runner.set_shape(tuple(int(d) for d in options["shape"].split("x")))
    return runner


@register_executor("neuron")
class NeuronExecutor(RunnerExecutor):
    """Batches on Neuron-compiled models, one per loaded instance."""

    backend = "neuron"
