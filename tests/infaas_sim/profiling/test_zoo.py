"""The built-in family: trained digits models with measured accuracy, ResNet-style models with
declared accuracy, valid ONNX graphs with a dynamic batch; registering ONNX files and PyTorch
modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.profiling import zoo

ort = pytest.importorskip("onnxruntime", reason="the real-execution extra (onnxruntime) is not installed")


def _session(onnx_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def test_digits_models_are_trained_and_their_graph_matches_sklearn_accuracy() -> None:
    m = zoo.builtin_model("digits-mlp-s")
    assert (m.task, m.dataset) == (zoo.DIGITS_TASK, zoo.DIGITS_DATASET)
    assert m.declared_accuracy is None and m.validation is not None
    x, y = m.validation
    assert x.shape == (540, 64) and len(y) == 540  # the 30% held-out split of 1,797 digits
    logits = _session(m.onnx_bytes).run(None, {zoo.INPUT_NAME: x})[0]
    assert logits.shape == (540, 10)
    assert (logits.argmax(1) == y).mean() > 0.9  # trained, not random (chance is 0.1)


def test_graphs_take_any_batch_size() -> None:
    for name in ("digits-linear", "resnet-tiny"):
        m = zoo.builtin_model(name)
        s = _session(m.onnx_bytes)
        assert s.get_inputs()[0].shape[0] == "batch"
        for b in (1, 3, 8):
            x = np.resize(m.sample_inputs, (b, *m.input_shape)).astype(np.float32)
            assert s.run(None, {zoo.INPUT_NAME: x})[0].shape == (b, 10)


def test_resnets_have_declared_accuracy_and_grow_in_cost() -> None:
    specs = {s.name: s for s in zoo.RESNETS}
    models = [zoo.builtin_model(n) for n in ("resnet-tiny", "resnet-s")]
    for m in models:
        assert m.validation is None and m.declared_accuracy == specs[m.name].declared_accuracy
        assert m.input_shape == (3, specs[m.name].image, specs[m.name].image)
    assert 0 < models[0].gflops < models[1].gflops
    # Larger members declare higher accuracy, so the family orders like a real one.
    acc = [s.declared_accuracy for s in zoo.RESNETS]
    assert acc == sorted(acc)


def test_family_selection_and_seeds() -> None:
    assert [m.name for m in zoo.builtin_family("small")] == list(zoo.SMALL)
    assert zoo.builtin_model("resnet-tiny", seed=1).onnx_bytes != zoo.builtin_model("resnet-tiny", seed=2).onnx_bytes
    assert zoo.builtin_model("resnet-tiny", seed=3).onnx_bytes == zoo.builtin_model("resnet-tiny", seed=3).onnx_bytes
    with pytest.raises(ConfigError, match="unknown built-in model 'vgg'"):
        zoo.builtin_model("vgg")
    with pytest.raises(ConfigError, match="'small', 'full'"):
        zoo.builtin_family("medium")


def test_a_model_needs_validation_or_declared_accuracy() -> None:
    with pytest.raises(ConfigError, match="validation set or a declared accuracy"):
        zoo.RegisteredModel("m", "t", "d", b"", np.zeros((1, 2), np.float32))


def test_onnx_file_registration_makes_the_batch_dynamic(tmp_path: Path) -> None:
    import onnx

    m = zoo.builtin_model("digits-linear")
    model = onnx.load_from_string(m.onnx_bytes)
    for v in list(model.graph.input) + list(model.graph.output):  # pin the batch to 1
        v.type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "pinned.onnx"
    onnx.save(model, str(path))
    reg = zoo.from_onnx_file(path, "pinned", "t", "d", m.sample_inputs, declared_accuracy=0.5)
    s = _session(reg.onnx_bytes)
    assert s.get_inputs()[0].shape[0] == "batch"
    assert s.run(None, {zoo.INPUT_NAME: m.sample_inputs[:5]})[0].shape == (5, 10)


def test_bad_onnx_files_are_clear_errors(tmp_path: Path) -> None:
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(ConfigError, match="not found"):
        zoo.from_onnx_file(tmp_path / "missing.onnx", "m", "t", "d", x, declared_accuracy=0.5)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a valid ONNX model"):
        zoo.from_onnx_file(junk, "m", "t", "d", x, declared_accuracy=0.5)


def test_pytorch_modules_export_with_a_dynamic_batch() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 5))  # fmt: skip
    example = torch.rand(2, 3, 8, 8)
    reg = zoo.from_torch(net, example, "tiny-torch", "t", "d", declared_accuracy=0.5)
    assert reg.input_shape == (3, 8, 8) and reg.torch_module is net
    s = _session(reg.onnx_bytes)
    x = torch.rand(6, 3, 8, 8)
    with torch.no_grad():
        want = net(x).numpy()
    got = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == (6, 5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
