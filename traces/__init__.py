"""Arrival streams: synthetic generators and trace-file replay, behind one interface and registry.

``make_trace("poisson", qps=200).arrivals(600, rng)`` gives sorted arrival times in seconds.
Every module imported here registers its trace; a new trace is one module plus one line below.
"""

from traces import burst, gamma, poisson, replay, step, twitter  # noqa: F401  (registration)
from traces.base import Trace
from traces.registry import TRACES, make_trace, register_trace

__all__ = ["TRACES", "Trace", "make_trace", "register_trace"]
