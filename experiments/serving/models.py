"""What each servable variant takes and returns, read once from its ONNX file.

A model-less name may resolve to several variants; a request's tensor must fit all of them
(the built-in families' variants of one task share their input), so the server checks the
input against every candidate's signature before the query enters the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infaas_sim.errors import ConfigError
from infaas_sim.realtime import Artifact

# ONNX TensorProto element types -> protocol datatypes (those the runners take)
_ONNX_TYPES = {1: "FP32", 10: "FP16", 11: "FP64", 6: "INT32", 7: "INT64", 2: "UINT8", 3: "INT8", 9: "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # without the batch dimension

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.shape]}


@dataclass(frozen=True)
class Signature:
    input: TensorSpec
    output: TensorSpec


def _spec(value: Any, where: str) -> TensorSpec:
    tt = value.type.tensor_type
    dims = tt.shape.dim[1:]
    if not all(d.HasField("dim_value") for d in dims):
        raise ConfigError(f"{where}: tensor {value.name} needs fixed dimensions after the batch")
    datatype = _ONNX_TYPES.get(tt.elem_type)
    if datatype is None:
        raise ConfigError(f"{where}: tensor {value.name} has an unsupported element type {tt.elem_type}")
    return TensorSpec(value.name, datatype, tuple(int(d.dim_value) for d in dims))


def read_signature(path: Path) -> Signature:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1 or not model.graph.output:
        raise ConfigError(f"{path.name}: the server runs models with one input, got {len(inputs)}")
    return Signature(_spec(inputs[0], path.name), _spec(model.graph.output[0], path.name))


def read_signatures(artifacts: Mapping[str, Artifact], only: Iterable[str] | None = None) -> dict[str, Signature]:
    """The signature of every variant with an ONNX artifact (others, such as compiled
    engines, are skipped: the server checks their inputs at run time only)."""
    keep = set(only) if only is not None else None
    out = {}
    for vid, art in artifacts.items():
        if keep is not None and vid not in keep:
            continue
        if art.path.suffix == ".onnx":
            out[vid] = read_signature(art.path)
    return out
