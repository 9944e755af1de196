"""``/metrics``: the server's Prometheus metrics (prometheus-client, text format).

Counters and histograms are updated on the asyncio loop as responses go out. The cluster's
state (loaded instances, workers by kind, cost rate) is read when /metrics is scraped, on the
cluster's own thread (:meth:`ClusterBridge.snapshot`): only that thread touches the cluster.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a millisecond model to a query that waited its full queue bound.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Telemetry:
    """One registry per server (tests run several servers in one process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("infaas_requests", "Inference requests by outcome and HTTP status",
                                ["status", "code"], registry=r)  # fmt: skip
        self.latency = Histogram("infaas_request_latency_seconds",
                                 "Served requests' latency in the cluster (arrival to completion), per application",
                                 ["application"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.instances = Gauge("infaas_loaded_instances", "Routable instances per variant", ["variant"], registry=r)
        self.workers = Gauge("infaas_workers", "Live workers per hardware kind", ["kind"], registry=r)
        self.cost_rate = Gauge("infaas_cost_rate_dollars_per_hour", "Price of the live workers", registry=r)
        self.in_flight = Gauge("infaas_in_flight_requests", "Requests waiting for their outcome", registry=r)

    def count(self, status: str, code: int) -> None:
        self.requests.labels(status=status, code=str(code)).inc()

    def render(self, state: dict[str, Any], in_flight: int) -> bytes:
        """The text exposition, with the cluster's state as ``state`` (a snapshot) has it."""
        self.instances.clear()  # variants unloaded since the last scrape disappear
        for vid, n in state["instances"].items():
            self.instances.labels(variant=vid).set(n)
        self.workers.clear()
        for kind, n in state["workers"].items():
            self.workers.labels(kind=kind).set(n)
        self.cost_rate.set(state["cost_rate"])
        self.in_flight.set(in_flight)
        return generate_latest(self.registry)
