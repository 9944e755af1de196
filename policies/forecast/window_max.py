"""``window_max``: the moving-window maximum, the baseline every learned forecaster must beat.

The forecast of the next ``horizon_s`` seconds' maximum rate is the maximum per-second count
of the last ``window_s`` seconds (default: as long as the horizon), i.e. "the next minute
will peak where the last minute did". Themis's lambda (the maximum per-second rate over the
last 5 s) is this forecaster with ``window_s=5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policies.forecast.base import FloatArray, Forecaster, check_int, register_forecaster


@register_forecaster("window_max")
class WindowMax(Forecaster):
    def __init__(self, horizon_s: int = 60, window_s: int | None = None) -> None:
        window = horizon_s if window_s is None else window_s
        check_int(self, "window_s", window, 1)
        super().__init__(horizon_s, window)
        self.window_s = window

    def predict_from(self, history: Sequence[float] | FloatArray) -> float:
        h = np.asarray(history, dtype=np.float64)
        if h.size == 0:
            return 0.0
        return float(h[-self.window_s :].max())
