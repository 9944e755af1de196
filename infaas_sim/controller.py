"""The controller: INFaaS's model-less query API.

``submit`` takes one query: it looks up the variants that can meet the query's requirement
(a memoised catalog index), asks the policy where to run it, and queues it there, or records
the rejection with its reason. Admission control rejects a query whose expected wait on its
instance is over ``cluster.max_queue_s`` (:meth:`~infaas_sim.cluster.Instance.admission_wait_s`:
the instance's state, its worker's start-up and loading included, and the pace it really runs
at), so that memory stays bounded under overload; the batcher drops a queued query that has
waited past the bound all the same, so no query runs after waiting longer.

Pipelines: when a non-final stage of a query completes, the cluster hands it back here and
the next stage is submitted at that same instant (from a zero-delay event, so that it is
routed after the completing batch's bookkeeping). Each stage goes through the same path:
candidates for the stage's requirement, the policy's ``route`` (which reads ``query.stage``,
``query.requirement`` and ``query.remaining_slo_ms(now)``), admission, queueing.
"""

from __future__ import annotations

from infaas_sim.catalog import Catalog
from infaas_sim.cluster import Cluster, stage_key
from infaas_sim.metrics import Recorder
from infaas_sim.policy import LoadThenServe, Policy, Serve
from infaas_sim.query import Query
from infaas_sim.view import ClusterView, InstanceState

_READY = InstanceState.READY  # bound once: an enum member lookup costs ~60 ns per use (per query here)
_LOADING = InstanceState.LOADING


class Controller:
    def __init__(self, cluster: Cluster, policy: Policy, recorder: Recorder) -> None:
        self.cluster = cluster
        self.policy = policy
        self.recorder = recorder
        self.view = ClusterView(cluster)
        self.catalog: Catalog = cluster.catalog
        cluster.on_stage_done = self._stage_done

    def submit(self, q: Query) -> None:
        """A query arrives."""
        cluster = self.cluster
        now = cluster.env.now
        self.recorder.arrival()  # counted; every CHUNK outcomes, the records are packed
        cluster.app_meter.add(q.app.index, now)
        cluster.total_meter.add(0, now)
        self._route(q, now)

    def _stage_done(self, q: Query, now: float) -> None:
        q.next_stage(now)
        self.cluster.stage_meter.add(stage_key(q.app.index, q.stage), now)
        self.cluster.env.timeout(0).callbacks.append(lambda _e: self._route(q, self.cluster.env.now))

    def _route(self, q: Query, now: float) -> None:
        cluster = self.cluster
        rec = self.recorder
        cands = self.catalog.candidates(q.requirement, q.batch)
        if not cands.indices:
            rec.rejected(q, cands.reason, now)
            return
        d = self.policy.route(q, cands, self.view)
        if isinstance(d, Serve):
            inst = cluster.instances.get(d.instance.iid)
            if inst is None or (inst.state is not _READY and inst.state is not _LOADING):
                rec.rejected(q, f"policy {self.policy.name} chose instance {d.instance.iid}, which is gone", now)
                return
            if inst.vi not in cands.members:
                rec.rejected(q, self._not_a_candidate(inst.variant.variant_id, q), now)
                return
        elif isinstance(d, LoadThenServe):
            vi = self.catalog.index_of.get(d.variant_id, -1)
            if vi not in cands.members:
                rec.rejected(q, self._not_a_candidate(d.variant_id, q), now)
                return
            inst = cluster.load(d.variant_id, d.worker_id, d.cores, d.max_batch, exclusive_device=d.exclusive_device)
            if inst is None:
                rec.rejected(q, f"no room to load {d.variant_id} (worker limit reached)", now)
                return
        else:
            rec.rejected(q, d.reason, now)
            return
        wait = inst.admission_wait_s(now)
        if wait > cluster.max_queue_s:
            rec.rejected(
                q,
                f"expected wait {wait:.3g} s for {inst.variant.variant_id} on worker {inst.worker.wid} "
                f"exceeds cluster.max_queue_s {cluster.max_queue_s:g} s",
                now,
            )
            return
        cluster.enqueue(inst, q)

    def _not_a_candidate(self, variant_id: str, q: Query) -> str:
        # Candidates already exclude variants whose max batch is below the query's batch, so
        # this also refuses a query larger than the chosen instance's variant can run.
        return (
            f"policy {self.policy.name} chose variant {variant_id} which does not meet the query's "
            f"requirement ({q.requirement.describe()}, batch {q.batch})"
        )
