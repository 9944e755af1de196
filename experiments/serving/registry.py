"""Model registration while serving (INFaaS's ``register model``).

``POST /v2/repository/models/{name}/load`` with ``{"parameters": {...}}``: the model as
``path`` (an ONNX file the server may read) or ``file:<anything>.onnx`` (its bytes, base64),
plus ``task``, ``dataset`` and either the declared ``accuracy`` or a validation set, as
``validation_path`` (an ``.npz`` the server may read) or ``validation_file`` (its bytes,
base64), holding ``inputs`` (n examples of the model's input shape) and integer ``labels`` (n):
then every generated variant's accuracy is measured on it (top-1), int8 ones included, and its
inputs calibrate the int8 variants. The same keys may come as the JSON string ``config`` (what
``tritonclient``'s ``load_model(name, config=...)`` sends).
The request is checked at once (a bad file or parameter: 400, one line, the catalog
unchanged); then, on a background thread, the variants this machine supports
(onnxruntime fp32, ORT-optimised, int8 dynamic and static, at ``server.cores``) are generated
and profiled into ``<output folder>/registered/<name>/``, and the cluster thread appends them
to the live catalog (indices of existing variants unchanged), after which the name, its
variants and its task-dataset are routable. ``GET /v2/models/{name}`` shows the progress.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.serving.models import Signature, read_signature, read_signatures
from experiments.serving.names import RequestError
from infaas_sim.catalog import Catalog
from infaas_sim.errors import InputError
from infaas_sim.profiling.zoo import RegisteredModel
from infaas_sim.realtime import Artifact, load_artifacts


@dataclass
class Registration:
    """One registered model's progress (read by the routes; written on the asyncio loop)."""

    name: str
    task: str
    dataset: str
    state: str = "profiling"  # profiling | ready | failed
    reason: str = ""
    variants: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "ready": self.state == "ready", "reason": self.reason,
                "task": self.task, "dataset": self.dataset, "variants": list(self.variants)}  # fmt: skip


def _text(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"parameters.{key} must be a non-empty string")
    return value.strip()


def _base64(params: Mapping[str, Any], key: str) -> bytes:
    """A file sent in a parameter as base64."""
    try:
        return base64.b64decode(str(params[key]), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"parameters.{key} must be the file's bytes in base64") from None


def parse_registration(name: str, params: Mapping[str, Any], folder: Path) -> tuple[Registration, RegisteredModel]:
    """Check a registration request and build the model to generate (blocking: ONNX parsing).
    Raises RequestError with the field for anything wrong; writes nothing but ``folder``'s
    upload, which is removed again on error."""
    from infaas_sim.profiling.zoo import from_onnx_file

    if not name or "/" in name or name.startswith("."):
        raise RequestError(f"model name {name!r} is not a valid name")
    if "config" in params:  # tritonclient's load_model(config=...): a JSON string of the same keys
        try:
            extra = json.loads(str(params["config"]))
        except json.JSONDecodeError:
            raise RequestError("parameters.config must be a JSON object (a string)") from None
        if not isinstance(extra, dict):
            raise RequestError("parameters.config must be a JSON object (a string)")
        params = {**extra, **{k: v for k, v in params.items() if k != "config"}}
    task, dataset = _text(params, "task"), _text(params, "dataset")
    given = [k for k in ("accuracy", "validation_path", "validation_file") if k in params]
    if len(given) != 1:
        raise RequestError("parameters: give one of accuracy (declared), validation_path or validation_file (an .npz "
                           f"of inputs and labels), got {given or 'none'}")  # fmt: skip
    acc = params.get("accuracy")
    if "accuracy" in params and (isinstance(acc, bool) or not isinstance(acc, int | float) or not math.isfinite(acc)
                                 or not 0 <= acc <= 1):  # fmt: skip
        raise RequestError(f"parameters.accuracy must be the declared accuracy, a number in [0, 1], got {acc!r}")
    files = [k for k in params if k.startswith("file:")]
    if ("path" in params) == bool(files) or len(files) > 1:
        raise RequestError("parameters: give the model as either path or one file:<name> (base64)")
    upload: Path | None = None
    if files:
        data = _base64(params, files[0])
        folder.mkdir(parents=True, exist_ok=True)
        upload = folder / f"{name}.upload.onnx"
        upload.write_bytes(data)
        path = upload
    else:
        path = Path(_text(params, "path")).expanduser()
    try:
        sig = read_signature(path) if path.is_file() else None
        if sig is None:
            raise RequestError(f"parameters.path: no file {str(path)!r} on the server")
        validation = _validation(params, tuple(sig.input.shape)) if acc is None else None
        # int8 calibration: the validation inputs where given (real data), else random ones
        sample = (validation[0][:64] if validation is not None
                  else np.random.default_rng(0).random((16, *sig.input.shape)).astype(np.float32))  # fmt: skip
        model = from_onnx_file(path, name, task, dataset, sample, validation=validation,
                               declared_accuracy=None if acc is None else float(acc))  # fmt: skip
    except RequestError:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    except Exception as exc:  # onnx's own errors: one line, the field named
        if upload is not None:
            upload.unlink(missing_ok=True)
        where = files[0] if files else "path"
        detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, InputError) else str(exc)
        raise RequestError(f"parameters.{where}: {detail.splitlines()[0][:300]}") from None
    return Registration(name, task, dataset), model


def _validation(params: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The validation set of a registration: (inputs as float32, labels as int64), checked."""
    import io

    key = "validation_path" if "validation_path" in params else "validation_file"
    try:
        if key == "validation_path":
            src: Any = Path(_text(params, key)).expanduser()
            if not src.is_file():
                raise RequestError(f"parameters.{key}: no file {str(src)!r} on the server")
        else:
            src = io.BytesIO(_base64(params, key))
        with np.load(src, allow_pickle=False) as npz:
            if "inputs" not in npz or "labels" not in npz:
                raise RequestError(f"parameters.{key}: the .npz needs arrays 'inputs' and 'labels', has {sorted(npz)}")
            x, y = np.asarray(npz["inputs"]), np.asarray(npz["labels"])
    except RequestError:
        raise
    except (ValueError, OSError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RequestError(f"parameters.{key}: not an .npz of inputs and labels ({detail})") from None
    if tuple(x.shape[1:]) != shape:
        raise RequestError(f"parameters.{key}: inputs of shape {list(x.shape)} do not match the model's input "
                           f"[n, {', '.join(str(d) for d in shape)}]")  # fmt: skip
    if len(x) < 1 or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise RequestError(f"parameters.{key}: labels must be {len(x)} integers (one per input), got shape "
                           f"{list(y.shape)} of {y.dtype}")  # fmt: skip
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise RequestError(f"parameters.{key}: inputs must be finite numbers")
    return x.astype(np.float32), y.astype(np.int64)


@dataclass(frozen=True)
class Profiled:
    """A registered model's generated and profiled variants, ready to join the catalog."""

    catalog: Catalog
    artifacts: dict[str, Artifact]
    signatures: dict[str, Signature]


def profile_in_background(
    model: RegisteredModel,
    folder: Path,
    cores: tuple[float, ...],
    max_batch: int,
    done: Callable[[Profiled | None, str], None],
) -> threading.Thread:
    """Generate and profile ``model``'s variants into ``folder`` on a thread of its own; then
    ``done(profiled, "")`` or ``done(None, reason)`` (called on that thread)."""
    from infaas_sim.profiling.build import build_catalog

    def work() -> None:
        try:
            path, _ = build_catalog([model], folder, cores=cores, max_batch=max_batch, backends=["onnxruntime"])
            artifacts = load_artifacts(path)
            done(Profiled(Catalog.load(str(path)), artifacts, read_signatures(artifacts)), "")
        except Exception as exc:  # a model that converts but cannot run: its reason, in one line
            done(None, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])

    t = threading.Thread(target=work, name=f"register-{model.name}", daemon=True)
    t.start()
    return t
