"""The audio core: the plan for [audio] cpus, and real processes pinned by it (this process's
children, and a real jackd started on the audio core)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pimodule.device import cpus
from pimodule.device.rt.runner import RtRunner


@pytest.mark.parametrize(
    "spec, machine, audio, control",
    [
        ("auto", {0, 1, 2, 3}, {3}, {0, 1, 2}),
        ("auto", {0, 1}, {1}, {0}),
        ("2,3", {0, 1, 2, 3}, {2, 3}, {0, 1}),
        ("1-2", {0, 1, 2, 3}, {1, 2}, {0, 3}),
        ("0", {0, 1}, {0}, {1}),
        ("AUTO ", {0, 1, 2, 3}, {3}, {0, 1, 2}),
    ],
)
def test_plans(spec, machine, audio, control):
    p = cpus.plan(spec, frozenset(machine))
    assert p.audio == audio and p.control == control
    assert p.audio_arg() == ",".join(str(c) for c in sorted(audio))
    assert "audio on CPU" in p.describe()


@pytest.mark.parametrize("spec, machine", [("none", {0, 1, 2, 3}), ("auto", {0}), ("0", {0}), ("", {0, 1})])
def test_nothing_is_pinned_on_one_cpu_or_when_asked(spec, machine):
    p = cpus.plan(spec, frozenset(machine))
    assert p.audio is None and p.control is None and p.audio_arg() is None
    assert p.describe() == "not pinned"


@pytest.mark.parametrize(
    "spec, match",
    [
        ("last", "expected"),
        ("5", "not one this process may use"),
        ("0,1", "no CPU for the control"),
        ("3-1", "expected"),
    ],
)
def test_plans_this_machine_cannot_follow_are_refused_with_the_reason(spec, match):
    with pytest.raises(cpus.CpuSpecError, match=match):
        cpus.plan(spec, frozenset({0, 1}))


def test_a_bad_plan_at_run_time_pins_nothing_and_says_why(caplog):
    p = cpus.plan_or_none("999")
    assert p.audio is None
    assert "not pinned" in caplog.text


def test_available_is_the_machine_not_this_process_mask():
    assert cpus.available() >= frozenset(os.sched_getaffinity(0))


def _allowed(pid: int) -> set[int]:
    with open(f"/proc/{pid}/status") as f:
        line = next(ln for ln in f if ln.startswith("Cpus_allowed_list:"))
    return set(cpus.parse_list(line.split(":", 1)[1].strip()))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_pin_process_moves_every_thread_of_a_running_process():
    """A child with three threads started before the pin: all of them move, and a thread it
    starts afterwards inherits the mask."""
    target = max(os.sched_getaffinity(0))
    code = (
        "import threading, time, os, sys\n"
        "ev = threading.Event()\n"
        "ts = [threading.Thread(target=ev.wait) for _ in range(2)]\n"
        "[t.start() for t in ts]\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "t = threading.Thread(target=lambda: print(sorted(os.sched_getaffinity(0)), flush=True)); t.start(); t.join()\n"
        "ev.set()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert cpus.pin_process(frozenset({target}), proc.pid)
        tids = os.listdir(f"/proc/{proc.pid}/task")
        assert len(tids) == 3
        assert all(_allowed(int(t)) == {target} for t in tids)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == str([target])
    finally:
        proc.kill()
        proc.wait()


def test_the_audio_process_is_told_its_cpus():
    runner = RtRunner.__new__(RtRunner)
    runner.realtime_priority = True
    stream = RtRunner.open_stream(runner, block_size=64, cpus="1")
    assert stream.args[-2:] == ["--cpus", "1"]
    assert "--cpus" not in RtRunner.open_stream(runner, block_size=64).args


@pytest.mark.skipif(shutil.which("jackd") is None, reason="needs jackd (apt install jackd2)")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_private_jack_server_runs_on_the_audio_core():
    from pimodule.device.jackdummy import JackUnavailable, dummy_jack_server

    core = frozenset({max(os.sched_getaffinity(0))})
    try:
        with dummy_jack_server(48000, 128, cpus=core) as server:
            tids = [int(t) for t in os.listdir(f"/proc/{server.pid}/task")]
            assert len(tids) > 1  # its driver and server threads, all on the core
            assert all(_allowed(t) == set(core) for t in tids)
    except JackUnavailable as err:
        pytest.skip(f"jackd could not start here: {err}")
