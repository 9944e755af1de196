"""The delays autoscalers put around their decisions (infaas_sim/hysteresis.py), written once."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from infaas_sim.hysteresis import Cooldown, HoldDown, ScaleInWindow, stabilize


def test_a_hold_down_is_due_after_n_agreeing_checks_in_a_row_and_then_counts_again() -> None:
    h: HoldDown[str] = HoldDown()
    assert [h.agree("a", 3) for _ in range(6)] == [False, False, True, False, False, True]


def test_a_check_that_does_not_agree_resets_the_count() -> None:
    h: HoldDown[str] = HoldDown()
    h.agree("a", 3)
    h.agree("a", 3)
    h.reset("a")
    assert h.count("a") == 0
    assert not h.agree("a", 3)


def test_a_hold_down_for_a_different_target_restarts_at_one() -> None:
    h: HoldDown[str] = HoldDown()
    assert not h.agree("a", 2, target="x")
    assert not h.agree("a", 2, target="y")  # a different move: one check so far
    assert h.agree("a", 2, target="y")


def test_hold_downs_of_different_keys_do_not_share_counts() -> None:
    h: HoldDown[int] = HoldDown()
    h.agree(1, 2)
    assert not h.agree(2, 2)
    assert h.agree(1, 2)


def test_a_cooldown_lets_a_key_act_again_only_after_its_seconds() -> None:
    c: Cooldown[str] = Cooldown(30)
    assert c.ready("k", 0.0) and c.until("k") == -math.inf
    c.acted("k", 10.0)
    assert not c.ready("k", 39.9)
    assert c.ready("k", 40.0) and c.until("k") == 40.0
    assert c.ready("other", 11.0)


def test_stabilize_holds_a_scale_down_to_the_highest_recommendation_of_its_window() -> None:
    history = [(0.0, 8), (100.0, 5), (250.0, 3)]
    assert stabilize(history, 300.0, current=8, recommendation=2, down_window_s=300.0) == 5  # (0, 8) left
    assert stabilize(history, 299.0, current=8, recommendation=2, down_window_s=300.0) == 8


def test_stabilize_holds_a_scale_up_to_the_lowest_recommendation_of_its_window() -> None:
    history = [(90.0, 2), (95.0, 6)]
    assert stabilize(history, 100.0, current=2, recommendation=9, up_window_s=20.0, down_window_s=0.0) == 2
    assert stabilize(history, 100.0, current=2, recommendation=9, up_window_s=0.0, down_window_s=0.0) == 9


def test_a_scale_in_window_keeps_each_component_at_the_highest_of_its_window() -> None:
    w = ScaleInWindow(10.0)
    assert w.floor(0.0, [4, 2]) == [4, 2]
    assert w.floor(5.0, [1, 3]) == [4, 3]
    assert w.floor(10.0, [1, 1]) == [4, 3]  # t = 0 is still within 10 s
    assert w.floor(10.5, [1, 1]) == [1, 3]
    assert w.floor(16.0, [1, 1]) == [1, 1]


def test_a_cleared_scale_in_window_forgets_what_it_held() -> None:
    w = ScaleInWindow(10.0)
    w.floor(0.0, [9])
    w.clear()
    assert w.floor(1.0, [2]) == [2]


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 20)), min_size=1, max_size=30), st.floats(0, 20))
def test_a_scale_in_window_is_the_maximum_over_the_recommendations_of_its_last_seconds(
    steps: list[tuple[float, int]], seconds: float
) -> None:
    w = ScaleInWindow(seconds)
    now, seen = 0.0, []
    for dt, r in steps:
        now += dt
        seen.append((now, r))
        got = w.floor(now, [r])
        assert got == [max(x for t, x in seen if t >= now - seconds - 1e-9)]
        assert got[0] >= r  # never below the current recommendation
