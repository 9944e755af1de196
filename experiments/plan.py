"""``infaas-plan``: which policy, cluster and knobs meet the goals at the least cost.

    infaas-plan workload=mix3 trace=poisson trace.qps=100 run.duration_s=120 \\
        plan.goals.max_violation_rate=0.01 plan.goals.budget_per_hour=5 plan.seeds=3

Every candidate (policy x cluster choice x the policy's knobs, experiments/planning/space.py)
runs in simulation for ``plan.seeds`` seeds, in parallel; the run folder gets the Pareto front,
its figure, the recommendation with its intervals and a ready-to-run ``recommended.yaml``
(experiments/planning/output.py); ``--verify`` then replays a window of the trace with it in
real mode and in simulation (experiments/planning/verify.py). Ctrl-C stops the search and keeps
what was evaluated. Bad input is a one-line error and exit status 2, as with ``infaas-sim``.
docs/planning.md has more.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments.outputs import write_error
from experiments.planning.choose import choose
from experiments.planning.evaluate import Evaluation, evaluate, probe
from experiments.planning.output import PlanContext, describe, write_plan
from experiments.planning.search import search, target, uses_grid
from experiments.planning.settings import VERIFY_S, PlanSettings, parse_settings
from experiments.planning.space import SearchSpace, cluster_space, planned_policies, policy_spaces
from infaas_sim.errors import ConfigError, InputError

CONF = Path(__file__).parent / "conf"
SECTIONS = ("trace", "workload", "catalog", "cluster", "executor", "run")
# plan.* sections whose keys are the user's (policy names, hardware kinds): set with ++ so that
# Hydra's struct mode accepts a key plan.yaml does not list.
FREE_FORM = ("plan.space.knobs.", "plan.space.instance_types.", "plan.space.max_workers.")
PROBE_S = 10.0  # simulated seconds of the run that finds which policies serve the workload
log = logging.getLogger("infaas_sim")


def build_space(base: dict[str, Any], settings: PlanSettings) -> SearchSpace:
    """The space over the policies that serve this workload (each is probed with a short run
    at its defaults; a policy that refuses it is skipped, with its reason)."""
    names = planned_policies(settings.space)
    full = SearchSpace(tuple(policy_spaces(names, settings.space)), cluster_space(base["cluster"], settings.space), {})
    short = {**base, "run": {**base["run"], "duration_s": min(PROBE_S, float(base["run"]["duration_s"])), "drain_s": 0}}
    defaults = {c.policy: c for c in full.defaults()}
    seed = int(base["run"].get("seed", 0))
    skipped = probe(names, lambda p: full.config(short, defaults[p], seed), settings.n_jobs)
    if len(skipped) == len(names):
        if len(set(skipped.values())) == 1:  # the workload or trace itself is wrong
            raise ConfigError(next(iter(skipped.values())))
        reasons = "; ".join(f"{p}: {w}" for p, w in skipped.items())
        raise ConfigError(f"no planned policy serves this workload ({reasons})")
    kept = tuple(p for p in full.policies if p.name not in skipped)
    return SearchSpace(kept, full.cluster, skipped)


@contextlib.contextmanager
def _stop_as_interrupt() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM end the search as KeyboardInterrupt, so that the plan keeps
    what it evaluated (SIGINT is also restored where a parent shell ignored it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _best_line(evs: list[Evaluation], settings: PlanSettings) -> str:
    choice = choose(evs, settings.goals)
    pick = choice.recommended or choice.nearest
    if pick is None:
        return "none yet"
    tag = "" if choice.recommended else "nearest "
    return (
        f"{tag}{pick.candidate.policy} ${pick.mean('cost_per_hour'):.3f}/h {100 * pick.mean('slo_violation_rate'):.2f}%"
    )


@contextlib.contextmanager
def candidate_backend(settings: PlanSettings) -> Iterator[None]:
    """Where the candidates' simulations run: joblib's local processes (``loky``), or Ray's
    joblib backend (``ray``: a local Ray, or the cluster at ``plan.ray_address``)."""
    if settings.backend != "ray":
        yield
        return
    try:
        import joblib
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise ConfigError("config: plan.backend=ray needs Ray (pip install -e '.[ray]')") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
    register_ray()
    try:
        with joblib.parallel_backend("ray"):
            yield
    finally:
        if started:
            ray.shutdown()


def plan(cfg: dict[str, Any], out_dir: Path, choices: dict[str, str]) -> int:
    """Run a plan from a plain config (the Hydra app's, resolved); the exit status."""
    settings = parse_settings(dict(cfg.get("plan") or {}))
    with candidate_backend(settings):
        return _plan(cfg, out_dir, choices)


def _plan(cfg: dict[str, Any], out_dir: Path, choices: dict[str, str]) -> int:
    from tqdm import tqdm

    settings = parse_settings(dict(cfg.get("plan") or {}))
    base = {k: cfg[k] for k in SECTIONS}
    space = build_space(base, settings)
    seeds = tuple(int(base["run"].get("seed", 0)) + i for i in range(settings.seeds))
    goal = target(space, settings)
    ctx = PlanContext(out_dir, settings.goals, space, base, choices, seeds,
                      "grid" if uses_grid(space, settings) else "optuna", goal, settings.figures)  # fmt: skip
    log.info(
        "infaas-plan: %s search, %d of %d candidates x %d seeds -> %s",
        ctx.method,
        goal,
        space.size(),
        len(seeds),
        out_dir,
    )
    evs: list[Evaluation] = []
    partial = True
    bar = tqdm(total=goal, desc="candidates", unit="cand", file=sys.stderr, dynamic_ncols=True)
    with _stop_as_interrupt():
        try:
            for ev in search(space, settings, lambda cands: evaluate(space, base, cands, seeds, settings.n_jobs)):
                evs.append(ev)
                bar.update(1)
                bar.set_postfix_str(f"best: {_best_line(evs, settings)}", refresh=False)
                if len(evs) % settings.batch == 0:  # a round done: keep it, whatever happens next
                    write_plan(ctx, evs, choose(evs, settings.goals), partial=True)
            partial = False
        except KeyboardInterrupt:
            print(f"\ninterrupted: keeping the {len(evs)} candidate(s) evaluated", file=sys.stderr)
        finally:
            bar.close()
    choice = choose(evs, settings.goals)
    write_plan(ctx, evs, choice, partial=partial)
    skipped = "".join(f"\nskipped {p}: {why}" for p, why in sorted(space.skipped.items()))
    stopped = " (interrupted: partial results)" if partial else ""
    print(f"{ctx.method} search{stopped}: {len(evs)} of {goal} candidates x {len(seeds)} seeds{skipped}")
    pick = choice.recommended or choice.nearest
    print(choice.message)
    if pick is not None:
        print(f"  {describe(pick)}")
        for pol, ev in sorted(choice.runners_up.items()):
            print(f"  runner-up {pol}: {ev.candidate.key}: {describe(ev)}")
        print(f"run it: infaas-sim --config-path {out_dir.resolve()} --config-name recommended")
    print(f"plan: {out_dir / 'plan.md'}")
    if partial:
        return 130
    if settings.verify_s is not None and pick is not None:
        try:
            text = verify_table(space.config(base, pick.candidate, seeds[0]), settings.verify_s, out_dir)
        except InputError as exc:
            print(f"error: verify: {exc}", file=sys.stderr)
            return 2
        print(text, end="")
    return 0


def verify_table(cfg: dict[str, Any], seconds: float, out_dir: Path) -> str:
    from experiments.planning.verify import table, verify

    return table(verify(cfg, seconds, out_dir), seconds)


@hydra.main(version_base=None, config_path="conf", config_name="plan")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    choices = {str(k): str(v) for k, v in hc.runtime.choices.items() if v is not None and "/" not in str(k)}
    try:
        status = plan({str(k): v for k, v in plain.items()}, out_dir, choices)
    except InputError as exc:
        message = f"error: {exc}"
        write_error(out_dir, message)
        log.error(message)
        print(message, file=sys.stderr)
        sys.exit(2)
    if status:
        sys.exit(status)


def _known(node: Any, path: list[str]) -> bool:
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_plan_overrides(args: list[str]) -> tuple[str | None, list[str]]:
    """A bad override as one line (None: fine), and the arguments with the free-form plan
    keys given as ``++`` (add or set)."""
    from experiments.run import check_overrides

    primary = OmegaConf.to_container(OmegaConf.load(CONF / "plan.yaml"))
    out, rest = [], []
    for a in args:
        key = a.split("=", 1)[0].lstrip("+~")
        if "=" in a and key.split(".")[0] == "policy":
            return "infaas-plan searches the policies: name them with plan.space.policies=[...]", args
        if "=" in a and not a.startswith("-") and key.startswith("plan"):
            if any(key.startswith(f) for f in FREE_FORM):
                out.append(f"++{a.lstrip('+')}")
                continue
            if not a.startswith("+") and not _known(primary, key.split(".")):
                return f"unknown plan option {key!r} in {a!r} (see experiments/conf/plan.yaml)", args
        else:
            rest.append(a)
        out.append(a)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:  # the plan's own keys too (``sagemaker+`` is no key: its option name sagemaker_plus is)
        OverridesParser.create().parse_overrides([a for a in out if "=" in a and not a.startswith("-")])
    except HydraException as exc:
        return f"bad command-line override: {str(exc).splitlines()[0]}", args
    return check_overrides(rest), out


def cli() -> None:
    """The console script."""
    from experiments.run import register_plugin_configs

    try:
        register_plugin_configs()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    argv = sys.argv[1:]
    if "--verify" in argv:  # a flag of ours, not Hydra's: the override it stands for
        argv = [a for a in argv if a != "--verify"]
        if not any(a.lstrip("+").startswith("plan.verify_s=") for a in argv):
            argv.append(f"plan.verify_s={VERIFY_S:g}")
    problem, args = check_plan_overrides(argv)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = args
    main()


if __name__ == "__main__":
    cli()
