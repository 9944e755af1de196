"""The workload builder's pipeline keys: ``stages`` under an application."""

from __future__ import annotations

import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.experiment import build_apps
from infaas_sim.query import Level, Requirement


def test_an_app_with_stages_is_a_pipeline_with_an_end_to_end_slo() -> None:
    cfg = {
        "apps": [
            {"name": "single", "target": "cls", "dataset": "ds", "slo_ms": 50},
            {
                "name": "video",
                "slo_ms": 300,
                "share": 2,
                "stages": [
                    {"target": "det", "dataset": "coco"},
                    {"target": "cls", "dataset": "ds", "min_accuracy": 0.7, "slo_ms": 100},
                ],
            },
        ]
    }
    single, video = build_apps(cfg)
    assert single.pipeline is None and single.slo_ms == 50
    assert video.pipeline is not None and video.slo_ms == 300 and video.share == 2 and video.index == 1
    assert video.stages == (
        Requirement(Level.TASK, "det", "coco", slo_ms=300),  # a stage's own bound defaults to end to end
        Requirement(Level.TASK, "cls", "ds", slo_ms=100, min_accuracy=0.7),
    )
    assert video.requirement == video.stages[0]


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        ({"name": "p", "stages": [{"target": "det", "dataset": "coco"}]}, "needs an end-to-end slo_ms"),
        ({"name": "p", "slo_ms": 100, "stages": []}, "stages must list at least one stage"),
        ({"name": "p", "slo_ms": 100, "target": "x", "stages": [{"target": "det", "dataset": "c"}]}, "['target']"),
        ({"name": "p", "slo_ms": 100, "stages": [{"target": "det", "dataset": "c", "share": 1}]}, "stages[0]"),
        ({"name": "p", "slo_ms": 100, "stages": [{"dataset": "c"}]}, "stages[0] needs a target"),
    ],
)
def test_bad_pipeline_configs_are_one_line_errors(app: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_apps({"apps": [app]})
    assert fragment in str(exc.value) and "\n" not in str(exc.value)
