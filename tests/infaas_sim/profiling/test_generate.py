"""Variant generation: every ONNX Runtime precision at every allocation, absent backends
reported, quantised variants still classify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.profiling.generate import ORT_PRECISIONS, generate_variants
from infaas_sim.profiling.zoo import builtin_model
from infaas_sim.realtime import backend_absent, load_artifacts, open_runner


def test_every_precision_at_every_allocation(built: Any) -> None:
    ids = {v.variant_id for v in built.report.variants}
    want = {f"{m}-ort-{p}-{c}c" for m in ("digits-mlp-s", "resnet-tiny") for p in ORT_PRECISIONS for c in (1, 2)}
    assert ids >= want
    assert not built.report.failed
    for v in built.report.variants:
        if v.backend == "onnxruntime":
            assert (built.folder / v.artifact).is_file()
            assert v.hardware == "cpu" and v.allocation in (1.0, 2.0) and v.max_batch == 4


def test_absent_backends_are_reported_and_the_rest_generate(built: Any) -> None:
    for backend in ("tensorrt", "neuron"):
        if backend_absent(backend) is not None:
            assert backend in built.report.absent
            assert not any(v.backend == backend for v in built.report.variants)
    # Neuron compiles PyTorch modules: the built-in ONNX-only models say so even with the SDK.
    assert "neuron" in built.report.absent
    assert "absent" in built.report.describe()


def test_quantised_digits_variants_agree_with_fp32(built: Any) -> None:
    arts = load_artifacts(built.catalog)
    x, y = built.models["digits-mlp-s"].validation
    preds = {}
    for p in ORT_PRECISIONS:
        art = arts[f"digits-mlp-s-ort-{p}-1c"]
        preds[p] = open_runner("onnxruntime", art.path, 1, 4, art.options).run(x).argmax(1)
    for p in ORT_PRECISIONS[1:]:
        assert (preds[p] == preds["fp32"]).mean() > 0.95, p
    assert (preds["fp32-opt"] == preds["fp32"]).all()  # graph optimisation changes nothing numerically
    assert (preds["int8-static"] == y).mean() > 0.9


def test_quantised_files_differ_from_fp32(built: Any) -> None:
    sizes = {p: (built.folder / f"resnet-tiny.{'opt' if p == 'fp32-opt' else p}.onnx").stat().st_size
             for p in ORT_PRECISIONS}  # fmt: skip
    assert sizes["int8-dynamic"] < sizes["fp32"]  # int8 weights: about a quarter of the bytes


def test_bad_generation_arguments(tmp_path: Path) -> None:
    m = builtin_model("digits-linear")
    with pytest.raises(ConfigError, match="unknown backend"):
        generate_variants(m, tmp_path, backends=["openvino"])
    with pytest.raises(ConfigError, match="unknown onnxruntime precision"):
        generate_variants(m, tmp_path, ort_precisions=["int4"])
    with pytest.raises(ConfigError, match="max_batch"):
        generate_variants(m, tmp_path, max_batch=0)


def test_only_the_requested_subset_is_generated(tmp_path: Path) -> None:
    m = builtin_model("digits-linear")
    rep = generate_variants(m, tmp_path, cores=[1], backends=["onnxruntime"], ort_precisions=["fp32"])
    assert [v.variant_id for v in rep.variants] == ["digits-linear-ort-fp32-1c"]
    assert rep.variants[0].options == {"opt": "basic"}
    assert not np.isnan(len(rep.absent))
