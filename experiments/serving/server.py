"""Building the server from plain config and running it: uvicorn in front, the cluster behind.

:class:`Serving` assembles what a real-mode run does (catalog, cluster spec, policy, real
executor: the same builders as ``infaas-sim``) around a :class:`ClusterBridge`, binds the
listening socket (port 0 picks a free one), and runs uvicorn either in the calling thread
(the console script: SIGINT / SIGTERM start the drain) or in a background thread (tests,
notebooks: :meth:`Serving.start` / :meth:`Serving.stop`). Shutdown: stop accepting, let
in-flight requests finish for up to ``server.drain_s``, answer newer requests on open
connections with 503, stop the cluster (whatever is still queued fails with the reason), then
write ``queries.parquet``, the timeline and ``summary.json`` as a run does.

With the default config, a missing catalog is the built-in digits family, generated and
profiled on this machine into the catalog's folder on first start and reused after.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from experiments.outputs import write_run
from experiments.serving.app import Service, make_app
from experiments.serving.bridge import ClusterBridge
from experiments.serving.models import read_signatures
from experiments.serving.telemetry import Telemetry
from infaas_sim.catalog import Catalog
from infaas_sim.errors import ConfigError
from infaas_sim.executor import make_executor
from infaas_sim.experiment import build_cluster
from infaas_sim.policy import make_policy
from infaas_sim.reprofile import Reprofiler
from infaas_sim.simulation import RunResult

log = logging.getLogger("infaas_sim.serve")

#: the built-in digits family (infaas_sim.profiling.zoo.DIGITS): what a bare infaas-serve serves
DIGITS_FAMILY = ("digits-linear", "digits-mlp-s", "digits-mlp-m", "digits-mlp-l")


@dataclass(frozen=True)
class ServerConfig:
    """The ``server`` config group (its defaults live here only)."""

    host: str = "127.0.0.1"  # loopback unless asked: nothing here authenticates a client
    port: int = 8000  # 0: any free port
    drain_s: float = 10.0  # on shutdown, how long in-flight requests may still finish
    sample_s: float = 1.0  # cluster state sampling (timeline, /metrics)
    seed: int = 0
    # A missing catalog file: generate and profile these built-in models into its folder.
    generate: bool = True
    family: tuple[str, ...] = DIGITS_FAMILY
    cores: tuple[float, ...] = (1.0,)
    max_batch: int = 8
    figures: bool = False  # draw the run's figures into the output folder on shutdown
    log_level: str = "warning"  # uvicorn's
    # Load shedding at the HTTP level: an inference request arriving while this many are in
    # flight is answered 503 at once, before its body is read or parsed (0: no limit). Past the
    # server's capacity requests otherwise queue in the event loop, unanswered for seconds, and
    # the open connections pile up (at 3x capacity clients ran out of sockets).
    max_inflight: int = 256
    # Online re-profiling (infaas_sim/reprofile.py): a batch size's profile becomes the median
    # served latency (the rest of its table scaled alike) once that is off by more than the
    # margin for this many batches. A wider margin than a simulated run's (run.reprofile):
    # a real runtime's batches spread more than the catalog's noise model.
    reprofile: bool = True
    reprofile_margin: float = 0.5
    reprofile_batches: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"config: server.port must be in [0, 65535], got {self.port}")
        if self.drain_s < 0 or self.sample_s <= 0:
            raise ConfigError("config: server.drain_s must be >= 0 and server.sample_s > 0")
        if self.max_batch < 1 or not self.cores or not self.family:
            raise ConfigError("config: server.max_batch must be >= 1, server.cores and server.family non-empty")
        if self.max_inflight < 0:
            raise ConfigError(f"config: server.max_inflight must be >= 0 (0: no limit), got {self.max_inflight}")
        if not self.reprofile_margin > 0 or self.reprofile_batches < 1:
            raise ConfigError("config: server.reprofile_margin must be > 0 and server.reprofile_batches >= 1")


def server_config(cfg: Mapping[str, Any] | None) -> ServerConfig:
    given = dict(cfg or {})
    allowed = {f.name for f in fields(ServerConfig)}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown} in server (allowed: {sorted(allowed)})")
    for key in ("family", "cores"):
        if key in given:
            given[key] = tuple(given[key])
    try:
        return ServerConfig(**given)
    except TypeError as exc:
        raise ConfigError(f"config: server: {exc}") from None


def ensure_catalog(path: str, cfg: ServerConfig) -> None:
    """Generate and profile ``cfg.family`` into ``path``'s folder if ``path`` is missing.
    Built in a scratch folder beside it and moved into place whole, so an interrupted or
    concurrent first start never leaves half a catalog."""
    target = Path(path)
    if target.suffix not in (".csv", ".parquet") or target.exists() or not cfg.generate:
        return
    from infaas_sim.profiling.build import build_catalog
    from infaas_sim.profiling.zoo import builtin_family

    folder = target.parent
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"catalog {path} not found, and its folder {folder} is not empty: not generating there")
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"infaas-serve: generating and profiling {', '.join(cfg.family)} into {folder} (first start)",
          file=sys.stderr)  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        # The profiler's noisy-profile warnings (dozens on a busy machine) go to a file beside
        # the catalog, and one line says how many.
        notes = io.StringIO()
        with contextlib.redirect_stderr(notes):
            build_catalog(builtin_family(list(cfg.family), seed=cfg.seed), scratch, cores=cfg.cores,
                          max_batch=cfg.max_batch, backends=["onnxruntime"], catalog_name=target.name)  # fmt: skip
        if notes.getvalue():
            (scratch / "profile_warnings.txt").write_text(notes.getvalue())
            n = len(notes.getvalue().splitlines())
            print(f"infaas-serve: {n} profiler warning(s): {folder / 'profile_warnings.txt'}", file=sys.stderr)
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        os.replace(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Uvicorn(uvicorn.Server):
    """Uvicorn with a drain before its own shutdown.

    The first SIGINT / SIGTERM (or :meth:`Serving.stop`) starts the drain: the listener stays
    open, new requests get 503 at once, and queries in flight get up to ``drain_s`` to finish;
    then uvicorn shuts down as usual (closing connections, a second's grace for responses
    being written). A second SIGINT skips the wait. Uvicorn's own handler would also re-raise
    the signal once serving ends, killing the process before it writes its outputs.
    """

    def __init__(self, config: uvicorn.Config, service: Service, drain_s: float) -> None:
        super().__init__(config)
        self.service = service
        self.drain_s = drain_s
        self.signal: int | None = None
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signal = sig
        if self.service.draining and sig == signal.SIGINT:
            self.should_exit = True
        self.service.draining = True

    async def on_tick(self, counter: int) -> bool:
        # Every 0.1 s on uvicorn's loop: end the drain once nothing is in flight.
        if self.service.draining and not self.should_exit:
            now = time.monotonic()
            if self._drain_until is None:
                self._drain_until = now + self.drain_s
            if self.service.bridge.in_flight == 0 or now >= self._drain_until:
                self.should_exit = True
        return await super().on_tick(counter)


class Serving:
    """One server: built from a plain config dict (sections catalog, cluster, policy,
    executor, server), writing its outputs into ``out_dir`` when it stops."""

    def __init__(self, cfg: Mapping[str, Any], out_dir: str | Path) -> None:
        allowed = {"catalog", "cluster", "policy", "executor", "server", "outputs"}
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise ConfigError(f"config: unknown section(s) {unknown} (allowed: {sorted(allowed)})")
        self.out_dir = Path(out_dir)
        self.config = server_config(cfg.get("server"))
        path = str(dict(cfg.get("catalog") or {}).get("path", "default"))
        ensure_catalog(path, self.config)
        full = Catalog.load(path)
        pol = dict(cfg.get("policy") or {})
        policy = make_policy(str(pol.get("name", "infaas")), **dict(pol.get("params") or {}))
        ex = dict(cfg.get("executor") or {})
        executor = make_executor(str(ex.get("name", "onnxruntime")), **dict(ex.get("params") or {}))
        if not executor.realtime:
            raise ConfigError(f"infaas-serve runs real executors (executor=onnxruntime, ...), not {executor.name!r}")
        artifacts = getattr(executor, "artifacts", {})
        # Only what this executor can run is routable: a catalog row without an artifact here
        # (a modelled GPU variant, say) would be chosen and then fail.
        servable = [v for v in full.variants if v.variant_id in artifacts]
        if not servable:
            raise ConfigError(f"catalog {path}: no variant has a {executor.name} artifact")
        catalog = Catalog(servable, name=full.name)
        spec = build_cluster(dict(cfg.get("cluster") or {}))
        c = self.config
        reprofiler = Reprofiler(c.reprofile_margin, c.reprofile_batches) if c.reprofile else None
        self.bridge = ClusterBridge(catalog, policy, executor, spec, c.seed, c.sample_s, reprofiler)
        self.service = Service(self.bridge, read_signatures(artifacts, catalog.index_of),
                               Telemetry(), registry_dir=self.out_dir / "registered", cores=self.config.cores,
                               max_batch=self.config.max_batch)  # fmt: skip
        self.app = make_app(self.service, self.config.max_inflight)
        # IPPROTO_TCP named: asyncio turns Nagle's algorithm off only on sockets that say they
        # are TCP. With proto 0 every response after a keep-alive connection's first waited
        # for the client's delayed ACK: 44 ms a request (headers and body are two writes).
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            self.sock.close()
            executor.close()
            where = f"{self.config.host}:{self.config.port}"
            raise ConfigError(f"server: cannot listen on {where} ({exc.strerror})") from None
        self.port = int(self.sock.getsockname()[1])
        self.uvicorn = _Uvicorn(
            uvicorn.Config(self.app, log_level=self.config.log_level, access_log=False, lifespan="off",
                           timeout_graceful_shutdown=1),
            self.service,
            self.config.drain_s,
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self.result: RunResult | None = None

    @property
    def catalog(self) -> Catalog:
        """The live catalog (it grows as models are registered)."""
        return self.service.catalog

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    # --- the console script: uvicorn in this (the main) thread ------------------------------
    def serve(self) -> RunResult:
        """Serve until SIGINT / SIGTERM, then drain and write the outputs."""
        self.bridge.start()
        print(f"infaas-serve: listening on {self.url} (Open Inference Protocol; /metrics)", file=sys.stderr)
        try:
            asyncio.run(self.uvicorn.serve(sockets=[self.sock]))
        finally:
            result = self.finish()
        return result

    # --- in-process: uvicorn in a background thread ---------------------------------------
    def start(self, timeout_s: float = 60.0) -> str:
        """Start serving in a background thread; the base URL once it accepts connections."""
        self.bridge.start()
        started = threading.Event()

        def run() -> None:
            async def main() -> None:
                task = asyncio.create_task(self.uvicorn.serve(sockets=[self.sock]))
                while not self.uvicorn.started and not task.done():
                    await asyncio.sleep(0.01)
                started.set()
                await task

            try:
                asyncio.run(main())
            finally:
                started.set()

        self._thread = threading.Thread(target=run, name="infaas-serve-http", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s) or not self.uvicorn.started:
            self.stop()
            raise RuntimeError("the server did not start")
        return self.url

    def stop(self) -> RunResult:
        """Drain (as SIGTERM does), stop, write the outputs; the run's records."""
        self.service.draining = True  # uvicorn's loop ends the drain (on_tick)
        if not self.uvicorn.started:
            self.uvicorn.should_exit = True  # it never served: nothing to drain
        if self._thread is not None:
            self._thread.join()
        return self.finish()

    def finish(self) -> RunResult:
        if self.result is not None:
            return self.result
        self.service.draining = True
        self.sock.close()
        result = self.bridge.stop("the server stopped while the query was queued or running")
        tally = dict(self.service.tally)
        # Every request, by outcome: the records hold those that became queries (served,
        # rejected, impossible, failed, and abandoned: the client left before its answer);
        # invalid, unknown_model and unavailable requests were refused before they were queries.
        result.summary["requests"] = {"total": sum(tally.values()), **tally}
        result.summary["server"] = {"url": self.url, "catalog": self.catalog.name}
        write_run(result, self.out_dir, figures=self.config.figures)
        self.result = result
        return result
