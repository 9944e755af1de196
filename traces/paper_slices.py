"""The slices of the real Twitter trace that the seed papers drove their evaluations with.

From ``../shared/traces/README.md`` (facts read from the papers' artifacts):

- IPA: ``rate = int(x / 8)`` (damping factor 8, so ``scale=1/8, rounding="floor"``) over 20
  minutes: bursty ``[1301160, 1302360)``, steady-low ``[1299600, 1300800)``, steady-high
  ``[1768800, 1769400)`` played twice, fluctuating ``[1301400, 1302000) + [1308600, 1309200)``.
- InfAdapter: the 1,260 s from ``15 * 86400 + 82 * 60``, unscaled (27..274 rps, mean about 97,
  a surge in minutes 10..16).
- Themis: 660 s from ``15 * 86400 + 84 * 60 + 450``, divided by 1.5 (1.7 and 2.3 for its
  heavier pipelines), at least 1 per second. The README does not say how fractions were
  resolved, so these keep the replay's default, unbiased stochastic rounding.

Each entry is a dict of :class:`~traces.replay.ReplayTrace` parameters (without ``path``);
``paper_trace(name)`` builds the replay on the real file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infaas_sim.errors import ConfigError, TraceError
from traces.replay import TRACE_DIR_ENV, ReplayTrace, repo_root

TWITTER_FILE = "twitter_per_second.txt.bz2"
DEFAULT_TRACE_DIR = Path("..") / "shared" / "traces"  # relative to the repository root

DAY_S = 86400
_IPA = {"scale": 1 / 8, "rounding": "floor"}
_THEMIS_START = 15 * DAY_S + 84 * 60 + 450

PAPER_SLICES: dict[str, dict[str, Any]] = {
    "ipa-bursty": {"start_s": 1301160, "length_s": 1200, **_IPA},
    "ipa-steady-low": {"start_s": 1299600, "length_s": 1200, **_IPA},
    "ipa-steady-high": {"segments": ((1768800, 600), (1768800, 600)), **_IPA},
    "ipa-fluctuating": {"segments": ((1301400, 600), (1308600, 600)), **_IPA},
    "infadapter": {"start_s": 15 * DAY_S + 82 * 60, "length_s": 1260, "scale": 1.0},
    "themis": {"start_s": _THEMIS_START, "length_s": 660, "scale": 1 / 1.5, "min_rate": 1.0},
    "themis-1.7": {"start_s": _THEMIS_START, "length_s": 660, "scale": 1 / 1.7, "min_rate": 1.0},
    "themis-2.3": {"start_s": _THEMIS_START, "length_s": 660, "scale": 1 / 2.3, "min_rate": 1.0},
}


def real_trace_path() -> Path | None:
    """The real Twitter trace: ``$INFAAS_TRACE_DIR/twitter_per_second.txt.bz2`` if that exists,
    else ``../shared/traces/twitter_per_second.txt.bz2`` from the repository root (the directory
    holding ``pyproject.toml``); None if neither exists."""
    candidates = []
    env = os.environ.get(TRACE_DIR_ENV)
    if env:
        candidates.append(Path(env).expanduser() / TWITTER_FILE)
    root = repo_root()
    if root is not None:
        candidates.append((root / DEFAULT_TRACE_DIR / TWITTER_FILE).resolve())
    return next((c for c in candidates if c.is_file()), None)


def paper_trace(name: str, path: str | os.PathLike[str] | None = None, **overrides: Any) -> ReplayTrace:
    """The replay of a paper's slice (``PAPER_SLICES[name]``, updated by ``overrides``, e.g.
    ``compression=2``) on ``path`` or the real trace. Raises ConfigError for an unknown name and
    TraceError if the file is absent."""
    if name not in PAPER_SLICES:
        raise ConfigError(f"unknown paper slice {name!r} (known: {', '.join(PAPER_SLICES)})")
    if path is None:
        path = real_trace_path()
        if path is None:
            raise TraceError(f"real Twitter trace {TWITTER_FILE} not found (set {TRACE_DIR_ENV} or pass path)")
    params = {**PAPER_SLICES[name], "format": "counts", **overrides}
    return ReplayTrace(path=str(path), **params)
