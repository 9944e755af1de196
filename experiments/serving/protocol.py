"""The Open Inference Protocol (KServe v2) over HTTP: parsing requests, encoding responses.

JSON tensors (``"data"`` as a flat or nested list) and the binary tensor extension of Triton's
clients (``tritonclient.http`` sends and asks for binary by default): the body is the JSON
header, ``Inference-Header-Content-Length`` bytes long, followed by each binary tensor in
order, sized by its ``parameters.binary_data_size``. Every problem is a :class:`RequestError`
whose message names the field (``inputs[0].shape``, ``parameters.slo_ms``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.serving.names import RequestError

HEADER_LENGTH = "Inference-Header-Content-Length"

#: protocol datatype -> numpy dtype (BYTES, string tensors, are not served here)
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
DATATYPE_OF = {dt: name for name, dt in DTYPES.items()}


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray


@dataclass(frozen=True)
class InferRequest:
    inputs: tuple[Tensor, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""
    # Requested outputs: name -> binary?; None: every output, binary if binary_data_output.
    outputs: Mapping[str, bool] | None = None
    binary_output: bool = False


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise RequestError(f"{where}.shape must be a list of integers, got {value!r}")
    if any(d < 0 for d in value):
        raise RequestError(f"{where}.shape must not be negative, got {value}")
    return tuple(value)


def parse_infer(body: bytes, header_length: str | None = None) -> InferRequest:
    """An inference request from its HTTP body (and the binary extension's header)."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise RequestError(f"header {HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise RequestError(f"header {HEADER_LENGTH} is {n}, but the body has {len(body)} bytes")
        head, rest = body[:n], memoryview(body)[n:]
    else:
        head, rest = body, memoryview(b"")
    try:
        doc = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"body: malformed JSON ({str(exc).splitlines()[0]})") from None
    doc = _object(doc, "body")
    params = _object(doc.get("parameters"), "parameters")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestError("inputs must be a non-empty list of tensors")
    inputs = []
    offset = 0
    for i, t in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        t = _object(t, where)
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError(f"{where}.name must be a non-empty string")
        datatype = t.get("datatype")
        if datatype not in DTYPES:
            raise RequestError(f"{where}.datatype must be one of {', '.join(DTYPES)}, got {datatype!r}")
        dtype = DTYPES[datatype]
        shape = _shape(t.get("shape"), where)
        count = math.prod(shape)
        tparams = _object(t.get("parameters"), f"{where}.parameters")
        size = tparams.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise RequestError(f"{where}.parameters.binary_data_size must be a non-negative integer")
            if size != count * dtype.itemsize:
                raise RequestError(
                    f"{where}.parameters.binary_data_size is {size} bytes, but shape {list(shape)} of "
                    f"{datatype} takes {count * dtype.itemsize}"
                )
            if offset + size > len(rest):
                raise RequestError(f"{where}: the body ends before its {size} binary bytes")
            array = np.frombuffer(rest[offset : offset + size], dtype=dtype).reshape(shape)
            offset += size
        else:
            if "data" not in t:
                raise RequestError(f"{where}.data is missing (and no binary_data_size is given)")
            try:
                array = np.asarray(t["data"], dtype=dtype)
            except (TypeError, ValueError):
                raise RequestError(f"{where}.data must hold {datatype} numbers") from None
            if array.size != count:
                raise RequestError(f"{where}.data has {array.size} values, but shape {list(shape)} needs {count}")
            array = array.reshape(shape)
        inputs.append(Tensor(name, datatype, array))
    if offset != len(rest):
        raise RequestError(f"body: {len(rest) - offset} bytes after the binary tensors that no input claims")
    outputs = None
    if doc.get("outputs") is not None:
        raw_outputs = doc["outputs"]
        if not isinstance(raw_outputs, list):
            raise RequestError("outputs must be a list")
        outputs = {}
        for i, o in enumerate(raw_outputs):
            o = _object(o, f"outputs[{i}]")
            if not isinstance(o.get("name"), str):
                raise RequestError(f"outputs[{i}].name must be a string")
            outputs[o["name"]] = bool(_object(o.get("parameters"), f"outputs[{i}].parameters").get("binary_data"))
    rid = doc.get("id", "")
    return InferRequest(
        inputs=tuple(inputs),
        parameters=params,
        request_id=str(rid) if rid is not None else "",
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output", False)),
    )


def encode_response(
    model_name: str,
    request_id: str,
    outputs: Sequence[tuple[str, np.ndarray]],
    parameters: Mapping[str, Any],
    binary: Mapping[str, bool],
) -> tuple[bytes, dict[str, str]]:
    """The body and extra headers of an inference response; ``binary[name]``: that output
    goes as binary data after the JSON header."""
    tensors = []
    blobs = []
    for name, array in outputs:
        array = np.ascontiguousarray(array)
        datatype = DATATYPE_OF.get(array.dtype)
        if datatype is None:
            raise TypeError(f"output {name}: unsupported dtype {array.dtype}")
        t: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary.get(name, False):
            data = array.tobytes()
            t["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            t["data"] = array.reshape(-1).tolist()
        tensors.append(t)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": tensors,
                           "parameters": dict(parameters)}  # fmt: skip
    if request_id:
        doc["id"] = request_id
    head = json.dumps(doc, allow_nan=False, default=_plain).encode()
    if not blobs:
        return head, {}
    return head + b"".join(blobs), {HEADER_LENGTH: str(len(head))}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
