"""Fixtures for the serving tests (test_serve.py, test_load.py): a cached digits catalog and
the config of a server on this machine as its only worker, on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SERVE_FAMILY = ["digits-linear", "digits-mlp-s"]  # two models: a few seconds to generate and profile
LOCAL_CLUSTER = {
    "workers": {"cpu": "local"},
    "instance_types": {"local": {"kind": "cpu", "vcpus": 2, "memory_mb": 8192, "price_per_hour": 0.096,
                                 "startup_s": 0.0}},
    "min_workers": {"cpu": 1},
    "max_workers": {"cpu": 1},
    "max_queue_s": 2.0,
    "resize_delay_s": 0.0,
}  # fmt: skip


def _config(catalog: Path, **cluster: Any) -> dict[str, Any]:
    return {
        "catalog": {"path": str(catalog)},
        "cluster": {**LOCAL_CLUSTER, **cluster},
        "policy": {"name": "infaas", "params": {}},
        "executor": {"name": "onnxruntime", "params": {"catalog": str(catalog)}},
        "server": {"port": 0, "family": SERVE_FAMILY, "drain_s": 5.0},
    }


@pytest.fixture(scope="session")
def serve_config() -> Callable[..., dict[str, Any]]:
    """``serve_config(catalog, **cluster_keys)``: a plain infaas-serve config."""
    return _config


@pytest.fixture(scope="session")
def serve_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server's first start generates and profiles the family: the cache later starts read."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("onnxruntime", reason="the real-execution extra is not installed")
    pytest.importorskip("sklearn", reason="the real-execution extra is not installed")
    from experiments.serving.server import Serving

    path = tmp_path_factory.mktemp("serve") / "variants" / "catalog.csv"
    serving = Serving(_config(path), path.parent.parent / "first")
    serving.start()
    serving.stop()
    assert path.is_file()
    return path
