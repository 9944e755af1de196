"""The controller: INFaaS's model-less query API.

``submit`` takes one query: it looks up the variants that can meet the query's requirement
(a memoised catalog index), asks the policy where to run it, and queues it there, or records
the rejection with its reason. Admission control rejects a query whose instance's queue is
already longer than ``max_queue_s`` of work, so that memory stays bounded under overload.
"""

from __future__ import annotations

from infaas_sim.catalog import Catalog
from infaas_sim.cluster import Cluster
from infaas_sim.metrics import Recorder
from infaas_sim.policy import LoadThenServe, Policy, Serve
from infaas_sim.query import Query
from infaas_sim.view import ClusterView, InstanceState


class Controller:
    def __init__(self, cluster: Cluster, policy: Policy, recorder: Recorder) -> None:
        self.cluster = cluster
        self.policy = policy
        self.recorder = recorder
        self.view = ClusterView(cluster)
        self.catalog: Catalog = cluster.catalog

    def submit(self, q: Query) -> None:
        cluster = self.cluster
        rec = self.recorder
        now = cluster.env.now
        rec.arrived += 1
        cluster.app_meter.add(q.app.index, now)
        cluster.total_meter.add(0, now)
        cands = self.catalog.candidates(q.app.requirement, q.batch)
        if not cands.indices:
            rec.rejected(q, cands.reason, now)
            return
        d = self.policy.route(q, cands, self.view)
        if isinstance(d, Serve):
            inst = cluster.instances.get(d.instance.iid)
            if inst is None or inst.state not in (InstanceState.READY, InstanceState.LOADING):
                rec.rejected(q, f"policy {self.policy.name} chose instance {d.instance.iid}, which is gone", now)
                return
        elif isinstance(d, LoadThenServe):
            inst = cluster.load(d.variant_id, d.worker_id)
            if inst is None:
                rec.rejected(q, f"no room to load {d.variant_id} (worker limit reached)", now)
                return
        else:
            rec.rejected(q, d.reason, now)
            return
        mb = inst.max_batch
        if inst.queued_inputs and inst.queued_inputs * inst.latency_table[mb] / mb > cluster.max_queue_s * 1000:
            rec.rejected(
                q,
                f"queue of {inst.variant.variant_id} on worker {inst.worker.wid} exceeds {cluster.max_queue_s:g} s",
                now,
            )
            return
        cluster.enqueue(inst, q)
