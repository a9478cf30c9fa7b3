"""The training loop's budget: Ctrl-C stops it between steps, a second one at once."""

from __future__ import annotations

import os
import signal

import pytest

from pimodule.laptop.loop import Budget


@pytest.fixture(autouse=True)
def ctrl_c_interrupts():
    """Python's own Ctrl-C handler, as in a terminal (a test run started in the background
    inherits SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_finishes_the_step_and_stops_before_the_next():
    budget = Budget(steps=100, progress=False)
    finished = []
    with pytest.raises(KeyboardInterrupt):
        for step in budget:
            if step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # arrives during the step
            finished.append(step)  # the rest of the step still runs
            budget.done()
    assert finished == [0, 1, 2, 3] and budget.step == 4
    budget.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back


def test_a_second_ctrl_c_interrupts_at_once():
    budget = Budget(steps=100, progress=False)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        for _ in budget:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after")  # not reached: the second one raised
    assert reached == [] and budget.step == 0
    budget.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_loop_that_ends_gives_the_handler_back():
    budget = Budget(steps=3, progress=False)
    for _ in budget:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        budget.done()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and budget.step == 3


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    budget = Budget(steps=3, progress=False)
    for _ in budget:
        os.kill(os.getpid(), signal.SIGINT)
        budget.done()
    assert budget.step == 3 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
