"""Model-less names: what a request's model name and parameters ask for.

INFaaS's three query levels on one URL: ``/v2/models/{name}`` where the name is a variant id
(pinned), an architecture (``parameters.slo_ms`` required) or a task and data set joined by a
hyphen (``parameters.slo_ms`` required, ``parameters.min_accuracy`` optional). The task part
may be the catalog's task or its last hyphenated words (``classification-digits`` names the
task ``digit-classification`` on data set ``digits``), as long as that is unambiguous.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infaas_sim.catalog import Catalog
from infaas_sim.query import Level, Requirement


class RequestError(ValueError):
    """A request the server cannot take as it is (HTTP 400), with a one-line reason."""


class UnknownModel(LookupError):
    """A name that is no variant, architecture or task of the catalog (HTTP 404)."""


@dataclass(frozen=True)
class ModelName:
    """What a model name resolved to."""

    name: str
    level: Level
    target: str
    dataset: str = ""


def resolve(catalog: Catalog, name: str) -> ModelName:
    if name in catalog.index_of:
        return ModelName(name, Level.VARIANT, name)
    if name in catalog.architectures:
        return ModelName(name, Level.ARCHITECTURE, name)
    matches = []
    for task, dataset in catalog.tasks:
        suffix = f"-{dataset}"
        if not name.endswith(suffix):
            continue
        head = name[: -len(suffix)]
        if head == task or task.endswith(f"-{head}"):
            matches.append((task, dataset))
    exact = [m for m in matches if f"{m[0]}-{m[1]}" == name]
    if len(exact) == 1 or len(matches) == 1:
        task, dataset = (exact or matches)[0]
        return ModelName(name, Level.TASK, task, dataset)
    if matches:
        which = ", ".join(f"{t}-{d}" for t, d in matches)
        raise RequestError(f"model name {name!r} is ambiguous: it could be {which}")
    raise UnknownModel(
        f"unknown model {name!r}: not a variant, an architecture or a task-dataset of catalog {catalog.name}"
    )


def _number(params: Mapping[str, Any], key: str) -> float | None:
    if key not in params or params[key] is None:
        return None
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RequestError(f"parameters.{key} must be a number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise RequestError(f"parameters.{key} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise RequestError(f"parameters.{key} must be finite, got {value!r}")
    return out


def requirement(model: ModelName, params: Mapping[str, Any]) -> Requirement:
    """The requirement of a request for ``model`` with its ``parameters``."""
    slo = _number(params, "slo_ms")
    acc = _number(params, "min_accuracy")
    if slo is not None and slo <= 0:
        raise RequestError(f"parameters.slo_ms must be > 0, got {slo:g}")
    if acc is not None and not 0 <= acc <= 1:
        raise RequestError(f"parameters.min_accuracy must be in [0, 1], got {acc:g}")
    if model.level is not Level.VARIANT and slo is None:
        raise RequestError(f"parameters.slo_ms is required: {model.name!r} is a model-less ({model.level.value}) name")
    return Requirement(model.level, model.target, model.dataset, slo, acc or 0.0)
