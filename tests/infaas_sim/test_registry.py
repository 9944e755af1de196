"""One registry type for every plug-in kind: one rule for duplicates, one-line errors, plug-ins
found through entry points; and the core imports no plug-in package."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from infaas_sim.errors import ConfigError
from infaas_sim.registry import Registry, RegistryError


class _A:
    pass


class _B:
    pass


def test_the_same_object_twice_is_harmless_another_under_a_taken_name_is_an_error() -> None:
    reg: Registry[type] = Registry("widget", "infaas_sim.test-none")
    reg.add("a", _A)
    reg.add("a", _A)  # a module imported twice
    with pytest.raises(RegistryError, match=r"widget 'a' is registered twice: .*_A and .*_B"):
        reg.add("a", _B)
    assert reg.get("a") is _A


def test_an_unknown_name_is_a_one_line_error_listing_the_known_ones() -> None:
    reg: Registry[type] = Registry("widget", "infaas_sim.test-none")
    reg.register("b")(_B)
    reg.register("a")(_A)
    with pytest.raises(ConfigError, match=r"^unknown widget 'c' \(known: a, b\)$"):
        reg.get("c")
    with pytest.raises(ConfigError, match="unknown widget"):
        reg.get(["not", "a", "name"])  # type: ignore[arg-type]
    assert reg.names() == ["a", "b"] and "a" in reg and list(reg) == ["a", "b"]


def test_prepare_runs_at_registration() -> None:
    seen: list[str] = []
    reg: Registry[type] = Registry("widget", "infaas_sim.test-none", lambda name, obj: seen.append(name))
    reg.register("x")(_A)
    assert seen == ["x"]


def test_every_built_in_kind_is_found_through_its_entry_points() -> None:
    # A fresh interpreter: nothing imported but the core, then each lookup loads its group.
    code = textwrap.dedent("""
        import sys
        from infaas_sim.executor import executor_names
        from infaas_sim.policy import policy_names
        from infaas_sim.realtime import BUILDERS, RUNNERS
        from infaas_sim.trace import TRACES
        assert not any(m.split(".")[0] in {"policies", "executors", "traces"} for m in sys.modules)
        print(policy_names()); print(executor_names()); print(TRACES.names())
        print(RUNNERS.names()); print(BUILDERS.names())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert eval(out[0]) == ["clipper+", "hpa", "infaas", "infaas-ilp", "infadapter", "ipa", "sagemaker+", "static",
                            "themis", "vpa"]  # fmt: skip
    assert eval(out[1]) == ["neuron", "onnxruntime", "ray", "sim", "tensorrt"]
    assert eval(out[2]) == ["burst", "gamma", "poisson", "replay", "step", "twitter"]
    assert eval(out[3]) == ["neuron", "onnxruntime", "tensorrt"]
    assert eval(out[4]) == ["neuron", "tensorrt"]


def test_importing_every_core_module_pulls_in_no_plug_in_package() -> None:
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import infaas_sim
        for m in pkgutil.walk_packages(infaas_sim.__path__, "infaas_sim."):
            if not m.name.endswith("__main__"):  # a command line, not a module to import
                importlib.import_module(m.name)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in {"policies", "executors", "traces", "experiments"})
        print(len([m for m in sys.modules if m.startswith("infaas_sim")]), bad)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert int(out[0]) > 30  # the walk reached the core's modules
    assert out[1].strip() == "[]"
