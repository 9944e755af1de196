"""experiment=beyond's sweep filter: a Hydra callback that drops the (scenario, arm) pairs that
cannot run (a single-model policy on a pipeline scenario) from the ``+scenario x +arm`` grid.

Hydra's basic sweeper only builds full cartesian products, and a sweeper of our own would have
to live in a top-level ``hydra_plugins`` package (Hydra refuses plugins elsewhere). So this
callback wraps ``BasicSweeper.split_arguments`` for the duration of one multirun: the jobs it
drops are never launched (no job folder, no error), and it writes them, with the reason, to
``excluded.md`` in the sweep folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# The sweeper's split_arguments before any wrapping (so that nested multiruns never stack wrappers).
_ORIGINAL = BasicSweeper.__dict__["split_arguments"]


def _labels(job: Sequence[str]) -> dict[str, str]:
    """``{"scenario": ..., "arm": ...}`` from one job's overrides (``+scenario=x``)."""
    out = {}
    for item in job:
        key, _, value = str(item).lstrip("+~").partition("=")
        out[key] = value
    return out


def excluded(job: Sequence[str], exclude: Mapping[str, Sequence[str]]) -> bool:
    """Whether the job's (scenario, arm) pair is listed in ``exclude`` (scenario -> arms)."""
    labels = _labels(job)
    return labels.get("arm") in set(exclude.get(labels.get("scenario", ""), ()))


class ExcludeCombinations(Callback):
    """``exclude``: scenario -> the arms not to run on it; ``reason``: why (written to excluded.md)."""

    def __init__(self, exclude: Mapping[str, Sequence[str]], reason: str = "") -> None:
        self.exclude = {str(k): [str(a) for a in v] for k, v in exclude.items()}
        self.reason = reason
        self.dropped: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        original = _ORIGINAL.__func__
        exclude, dropped = self.exclude, self.dropped

        def split_arguments(overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:
            batches = original(overrides, max_batch_size)
            kept = []
            for batch in batches:
                for job in batch:
                    if excluded(job, exclude):
                        dropped.append(" ".join(job))
                kept.append([job for job in batch if not excluded(job, exclude)])
            return [b for b in kept if b]

        BasicSweeper.split_arguments = staticmethod(split_arguments)  # type: ignore[method-assign]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        BasicSweeper.split_arguments = _ORIGINAL  # type: ignore[method-assign]
        if not self.dropped:
            return
        lines = [f"- {job}" for job in self.dropped]
        text = f"# Excluded from the sweep\n\n{self.reason}\n\n" + "\n".join(lines) + "\n"
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            (sweep_dir / "excluded.md").write_text(text)
        print(f"\nexcluded {len(self.dropped)} (scenario, arm) pairs: {self.reason}")
