"""The trace registry: ``@register_trace("name")`` on a Trace dataclass, ``make_trace(name, **params)``.

The registry is the core's (:mod:`infaas_sim.trace`, one ``Registry`` type for every plug-in);
this module keeps the names traces import. A new trace is one new module (a frozen dataclass
subclassing :class:`~infaas_sim.trace.Trace`, decorated with ``@register_trace``) plus its entry
point in ``pyproject.toml`` (``infaas_sim.traces``) and one import line in ``traces/__init__.py``.
"""

from infaas_sim.trace import TRACES, make_trace, register_trace

__all__ = ["TRACES", "make_trace", "register_trace"]
