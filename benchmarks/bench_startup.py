"""Start-up of the default ``infaas-sim`` run: CPU seconds from the interpreter's start to the
first simulated event (imports, Hydra's composition, config checks, catalog, trace and
workload), then the run and what follows it (records, summary, files), in a fresh
interpreter each repeat (nothing cached in-process), medians of ``--repeat``.

    .venv/bin/python benchmarks/bench_startup.py [--repeat 5] [--figures]

CPU time (``time.process_time``), never wall time: the machine is shared. Issue 16's target:
start-up under 1 CPU second. ``--figures`` draws the figures too (matplotlib is imported only
then, after the run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

# Run in the child: wraps run_simulation to read the clock at its entry and exit.
CHILD = """
import json, runpy, sys, time
import infaas_sim.experiment as ex
orig = ex.run_simulation
marks = {}
def timed(*a, **k):
    marks["enter"] = time.process_time()
    r = orig(*a, **k)
    marks["exit"] = time.process_time()
    return r
ex.run_simulation = timed
sys.argv = ["infaas-sim", "run.progress=false", "outputs.figures=%s", "hydra.run.dir=%s"]
try:
    runpy.run_module("experiments.run", run_name="__main__")
except SystemExit:
    pass
end = time.process_time()
mods = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"startup": marks["enter"], "run": marks["exit"] - marks["enter"], "after": end - marks["exit"],
                  "scipy": "scipy" in mods, "matplotlib": "matplotlib" in mods}))
"""


def one(figures: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        code = CHILD % ("true" if figures else "false", out)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--figures", action="store_true", help="draw the figures (outputs.figures=true)")
    args = ap.parse_args()
    runs = [one(args.figures) for _ in range(args.repeat)]
    med = {k: statistics.median(float(r[k]) for r in runs) for k in ("startup", "run", "after")}
    print(f"default infaas-sim run, figures {'on' if args.figures else 'off'}, median of {args.repeat} (CPU s)")
    print(f"  start-up (to the first event)  {med['startup']:.2f}")
    print(f"  the run                        {med['run']:.2f}")
    print(f"  after it (records, files)      {med['after']:.2f}")
    scipy, mpl = any(r["scipy"] for r in runs), any(r["matplotlib"] for r in runs)
    print(f"  scipy imported: {scipy}; matplotlib imported: {mpl}")
    print(f"issue 16 target: start-up < 1 CPU s: {'met' if med['startup'] < 1.0 else 'not met'}")


if __name__ == "__main__":
    main()
