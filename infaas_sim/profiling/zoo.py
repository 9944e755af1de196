"""Registered models and the built-in model family.

A :class:`RegisteredModel` is what variant generation starts from: an ONNX graph with a dynamic
batch dimension, sample inputs (calibration and warm-up), and either a validation set (accuracy
is measured) or a declared accuracy. Models come from an ONNX file, a PyTorch module with an
example input (needs torch), or the built-in family, which needs neither torch nor a download:

- ``digits-*``: a logistic regression and MLPs of three sizes trained in seconds with
  scikit-learn on its bundled 8x8 digits data set; their graphs are written with onnx.helper
  from the trained weights, so accuracies are measured on a held-out split;
- ``resnet-*``: ResNet-style CNNs (3x3 convolutions in residual blocks, global pooling, a
  linear head) defined in code with random weights, for realistic CPU latencies; their
  accuracy is declared (random weights classify nothing) and marked so in the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infaas_sim.errors import ConfigError

# Opset and IR version every ONNX Runtime >= 1.16 loads (onnx >= 1.15 writes newer IRs by default).
OPSET = 17
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError("the onnx package is needed here: pip install -e '.[real]'") from None
    return onnx


@dataclass(frozen=True, eq=False)
class RegisteredModel:
    """A model to generate variants of. ``onnx_bytes`` has a dynamic batch dimension 0."""

    name: str  # the architecture name in the catalog
    task: str
    dataset: str
    onnx_bytes: bytes
    sample_inputs: np.ndarray  # (n, *input_shape): calibration and warm-up inputs
    validation: tuple[np.ndarray, np.ndarray] | None = None  # (inputs, integer labels)
    declared_accuracy: float | None = None
    gflops: float = 0.0  # per input
    source: str = ""
    # The PyTorch module, when registered from one (Neuron compiles from it).
    torch_module: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.validation is None and self.declared_accuracy is None:
            raise ConfigError(f"model {self.name!r}: give a validation set or a declared accuracy")
        if self.declared_accuracy is not None and not 0 <= self.declared_accuracy <= 1:
            raise ConfigError(f"model {self.name!r}: declared accuracy must be in [0, 1]")
        if len(self.sample_inputs) < 1:
            raise ConfigError(f"model {self.name!r}: needs at least one sample input")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.sample_inputs.shape[1:])


# --- registration -----------------------------------------------------------------------
def _dynamic_batch(model: Any) -> Any:
    """Make dimension 0 of every graph input and output symbolic ("batch")."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    return model


def from_onnx_file(
    path: str | Path,
    name: str,
    task: str,
    dataset: str,
    sample_inputs: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    declared_accuracy: float | None = None,
    gflops: float = 0.0,
) -> RegisteredModel:
    """Register an ONNX file (its batch dimension is made dynamic)."""
    onnx = _onnx()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"model file {str(p)!r} not found")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConfigError(f"model file {str(p)!r} is not a valid ONNX model: {exc}") from None
    if len(model.graph.input) != 1:
        raise ConfigError(f"model file {str(p)!r}: only single-input models are supported")
    return RegisteredModel(
        name, task, dataset, _dynamic_batch(model).SerializeToString(), np.asarray(sample_inputs, np.float32),
        validation, declared_accuracy, gflops, source=f"onnx file {p.name}",
    )  # fmt: skip


def from_torch(
    module: Any,
    example_input: Any,
    name: str,
    task: str,
    dataset: str,
    sample_inputs: np.ndarray | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    declared_accuracy: float | None = None,
    gflops: float = 0.0,
) -> RegisteredModel:
    """Register a PyTorch module: export it to ONNX fp32 with a dynamic batch dimension."""
    try:
        import torch
    except ImportError:
        raise ConfigError("registering a PyTorch module needs torch: pip install -e '.[torch]'") from None
    import io
    import warnings

    module = module.eval()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False): it needs no onnxscript and names the batch
        # dimension through dynamic_axes. Torch >= 2.9 warns that it is no longer the default.
        # torch's stubs say a path, but the exporter writes to file-like objects too.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module, (example_input,), buf,  # type: ignore[arg-type]
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    samples = sample_inputs if sample_inputs is not None else example_input.detach().cpu().numpy()
    return RegisteredModel(
        name, task, dataset, buf.getvalue(), np.asarray(samples, np.float32), validation, declared_accuracy,
        gflops, source="pytorch export", torch_module=module,
    )  # fmt: skip


# --- graph building with onnx.helper ------------------------------------------------------
class _Graph:
    """Accumulates nodes and initialisers for a single-input, single-output model."""

    def __init__(self, input_shape: Sequence[int]) -> None:
        self.onnx = _onnx()
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.input_shape = tuple(input_shape)
        self.flops = 0.0
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        n = self.name(prefix)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), n))
        return n

    def node(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def build(self, out: str, classes: int, graph_name: str) -> bytes:
        h, tp = self.onnx.helper, self.onnx.TensorProto
        self.nodes.append(h.make_node("Identity", [out], [OUTPUT_NAME]))
        graph = h.make_graph(
            self.nodes, graph_name, [h.make_tensor_value_info(INPUT_NAME, tp.FLOAT, ["batch", *self.input_shape])],
            [h.make_tensor_value_info(OUTPUT_NAME, tp.FLOAT, ["batch", classes])], self.inits,
        )  # fmt: skip
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="infaas-sim")
        model.ir_version = IR_VERSION
        self.onnx.checker.check_model(model)
        return bytes(model.SerializeToString())


def dense_onnx(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], name: str) -> tuple[bytes, float]:
    """An MLP (Gemm + ReLU, no activation on the last layer) as ONNX bytes, and its GFLOPs."""
    g = _Graph((weights[0].shape[0],))
    x = INPUT_NAME
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = g.node("Gemm", [x, g.const("w", w), g.const("b", b)])
        g.flops += 2.0 * w.shape[0] * w.shape[1]
        if i < len(weights) - 1:
            x = g.node("Relu", [x])
    return g.build(x, weights[-1].shape[1], name), g.flops / 1e9


def resnet_onnx(
    image: int, widths: Sequence[int], blocks: Sequence[int], classes: int, seed: int, name: str
) -> tuple[bytes, float]:
    """A ResNet-style CNN with He-initialised random weights: a 3x3 stem, stages of basic
    residual blocks (two 3x3 convolutions, a 1x1 projection when the shape changes; the first
    block of every stage after the first halves the resolution), global average pooling and a
    linear head. Batch normalisation is omitted: at inference it folds into the convolution."""
    rng = np.random.default_rng(seed)
    g = _Graph((3, image, image))

    def conv(x: str, cin: int, cout: int, k: int, stride: int, size: int) -> str:
        # Scaled so activations neither explode nor vanish through the depth.
        w = rng.standard_normal((cout, cin, k, k)) * np.sqrt(1.0 / (cin * k * k))
        out_size = (size + stride - 1) // stride
        g.flops += 2.0 * cout * cin * k * k * out_size * out_size
        return g.node(
            "Conv", [x, g.const("w", w), g.const("b", np.zeros(cout))],
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
        )  # fmt: skip

    size = image
    x = g.node("Relu", [conv(INPUT_NAME, 3, widths[0], 3, 1, size)])
    cin = widths[0]
    for stage, (cout, n) in enumerate(zip(widths, blocks, strict=True)):
        for b in range(n):
            stride = 2 if stage > 0 and b == 0 else 1
            out = (size + stride - 1) // stride
            y = g.node("Relu", [conv(x, cin, cout, 3, stride, size)])
            y = conv(y, cout, cout, 3, 1, out)
            skip = conv(x, cin, cout, 1, stride, size) if stride != 1 or cin != cout else x
            x = g.node("Relu", [g.node("Add", [y, skip])])
            cin, size = cout, out
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    w = rng.standard_normal((cin, classes)) * np.sqrt(1.0 / cin)
    x = g.node("Gemm", [x, g.const("w", w), g.const("b", np.zeros(classes))])
    g.flops += 2.0 * cin * classes
    return g.build(x, classes, name), g.flops / 1e9


# --- the built-in family ----------------------------------------------------------------
@dataclass(frozen=True)
class DigitsSpec:
    name: str
    hidden: tuple[int, ...]  # () is a logistic regression


@dataclass(frozen=True)
class ResNetSpec:
    name: str
    image: int
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    # Declared top-1: what a trained network of this size would claim. Random weights score
    # at chance, so this number only orders the family (larger = more accurate), and the
    # catalog marks it "declared".
    declared_accuracy: float


DIGITS = (
    DigitsSpec("digits-linear", ()),
    DigitsSpec("digits-mlp-s", (32,)),
    DigitsSpec("digits-mlp-m", (96, 48)),
    DigitsSpec("digits-mlp-l", (256, 128)),
)
RESNETS = (
    ResNetSpec("resnet-tiny", 32, (8, 16), (1, 1), 0.60),
    ResNetSpec("resnet-s", 64, (16, 32, 64), (1, 1, 1), 0.68),
    ResNetSpec("resnet-m", 96, (32, 64, 128), (2, 2, 2), 0.74),
    ResNetSpec("resnet-l", 112, (48, 96, 192), (2, 2, 2), 0.78),
)
#: the family the tests and CI use: small, generated and profiled in a few seconds
SMALL = ("digits-linear", "digits-mlp-s", "digits-mlp-m", "resnet-tiny")
FULL = tuple(s.name for s in DIGITS) + tuple(s.name for s in RESNETS)
DIGITS_TASK, DIGITS_DATASET = "digit-classification", "digits"
IMAGE_TASK, IMAGE_DATASET = "image-classification", "synthetic-images"


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits (1,797 8x8 images, pixel values 0-16), scaled to [0, 1] and split
    70/30 into train and validation with a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError("the built-in digits family needs scikit-learn: pip install -e '.[real]'") from None
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.7 * len(x))
    tr, va = order[:cut], order[cut:]
    return x[tr], y[tr].astype(np.int64), x[va], y[va].astype(np.int64)


def _digits_model(spec: DigitsSpec, seed: int) -> RegisteredModel:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    xtr, ytr, xva, yva = digits_split(seed)
    # One BLAS thread: these matrices are small, and more threads only contend on a small machine.
    with warnings.catch_warnings(), threadpool_limits(1):
        # A fixed, short training budget keeps generation to seconds; the accuracy it
        # reaches is what gets measured, so an unconverged fit is not an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if not spec.hidden:
            clf = LogisticRegression(max_iter=300).fit(xtr, ytr)
            weights, biases = [clf.coef_.T], [clf.intercept_]
        else:
            mlp = MLPClassifier(spec.hidden, max_iter=80, random_state=seed).fit(xtr, ytr)
            weights, biases = list(mlp.coefs_), list(mlp.intercepts_)
    onnx_bytes, gflops = dense_onnx(weights, biases, spec.name)
    return RegisteredModel(
        spec.name, DIGITS_TASK, DIGITS_DATASET, onnx_bytes, xtr[:64], (xva, yva), None, gflops,
        source=f"built-in: scikit-learn {'LogisticRegression' if not spec.hidden else 'MLPClassifier'} "
        f"hidden={list(spec.hidden)} trained on sklearn digits (70/30 split, seed {seed})",
    )  # fmt: skip


def _resnet_model(spec: ResNetSpec, seed: int) -> RegisteredModel:
    onnx_bytes, gflops = resnet_onnx(spec.image, spec.widths, spec.blocks, 10, seed, spec.name)
    samples = np.random.default_rng([seed, 7]).random((16, 3, spec.image, spec.image), dtype=np.float32)
    return RegisteredModel(
        spec.name, IMAGE_TASK, IMAGE_DATASET, onnx_bytes, samples, None, spec.declared_accuracy, gflops,
        source=f"built-in: ResNet-style {spec.image}px widths={list(spec.widths)} blocks={list(spec.blocks)}, "
        "random weights (accuracy declared)",
    )  # fmt: skip


_BUILDERS: dict[str, Callable[[int], RegisteredModel]] = {
    **{s.name: (lambda seed, s=s: _digits_model(s, seed)) for s in DIGITS},  # type: ignore[misc]
    **{s.name: (lambda seed, s=s: _resnet_model(s, seed)) for s in RESNETS},  # type: ignore[misc]
}


def builtin_names() -> list[str]:
    return list(_BUILDERS)


def builtin_model(name: str, seed: int = 0) -> RegisteredModel:
    if name not in _BUILDERS:
        raise ConfigError(f"unknown built-in model {name!r} (known: {', '.join(_BUILDERS)})")
    return _BUILDERS[name](seed)


def builtin_family(names: Sequence[str] | str = "small", seed: int = 0) -> list[RegisteredModel]:
    """The built-in models: ``small`` (tests, CI), ``full``, or a list of names."""
    if isinstance(names, str):
        if names not in ("small", "full"):
            raise ConfigError(f"built-in family must be 'small', 'full' or a list of names, got {names!r}")
        names = SMALL if names == "small" else FULL
    return [builtin_model(n, seed) for n in names]
