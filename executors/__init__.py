"""Executors: how a batch of work takes time. Importing this package registers them."""

from executors import neuron, onnxruntime, ray, sim, tensorrt  # noqa: F401
