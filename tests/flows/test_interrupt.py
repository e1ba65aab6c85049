"""SIGINT / SIGTERM handling of a command (``flows.interrupt``), on a real process tree.

A small Python program enters :func:`flows.interrupt.stop_on_signals` and starts two children: a
worker that dies on SIGTERM, and a "server" (registered like the temporary Prefect API server) that
ignores SIGTERM, so the grace period before it is killed can be seen. The real command line is tested
end to end in ``test_signals.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from flows.interrupt import TERMINATE_WAIT_S

PROGRAM = textwrap.dedent("""
    import subprocess, sys, time
    from flows import interrupt

    with interrupt.stop_on_signals("the test program"):
        worker = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                   "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                                   "print('worker', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
        worker.stdout.readline()  # started: a Ctrl-C now kills it quietly
        server = subprocess.Popen([sys.executable, "-c",
                                   "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                   "print('server', flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, start_new_session=True)
        server.stdout.readline()  # its SIGTERM handler is in place
        interrupt._state["servers"].add(server.pid)
        print(worker.pid, server.pid, flush=True)
        time.sleep(60)
    print("not interrupted", flush=True)
""")


def start() -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    children = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(children) == 2, proc.stderr.read()
    return proc, children


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("target", ["process", "group"])
def test_one_signal_stops_the_tree_after_the_servers_grace(sig, status, target):
    proc, children = start()
    t0 = time.monotonic()
    (os.killpg if target == "group" else os.kill)(proc.pid, sig)
    rc = proc.wait(timeout=30)
    seconds = time.monotonic() - t0
    stderr = proc.stderr.read()
    assert rc == status, stderr
    # the server ignores SIGTERM: it is killed once its grace has passed, not earlier
    assert TERMINATE_WAIT_S - 0.5 <= seconds <= TERMINATE_WAIT_S + 5, seconds
    assert stderr.strip().splitlines() == [  # (after a newline: below any progress bar)
        f"interrupted ({sig.name}): stopped the test program; finished blocks are kept — rerun the same "
        "command to resume"
    ]
    assert "not interrupted" not in proc.stdout.read()
    time.sleep(0.2)
    assert alive(children) == []


def test_a_second_ctrl_c_exits_at_once():
    proc, children = start()
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=30)
    assert rc == 130
    assert time.monotonic() - t0 < 1.5
    time.sleep(0.2)
    assert alive(children) == []


def test_handlers_are_restored_after_the_block():
    from flows.interrupt import stop_on_signals

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stop_on_signals("x"):
        assert signal.getsignal(signal.SIGINT) is not before[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
