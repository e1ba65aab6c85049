"""Ctrl-C and SIGTERM stop a command within seconds, leave nothing running, and keep the run resumable.

A ``neurorecon`` command owns a tree of processes: the local Dask cluster's nannies and workers, and for
``run`` / ``demo`` a temporary Prefect API server (:func:`start_temporary_prefect_server`). Left to
Python and Prefect, a signal sent to the terminal's process group killed the API server at once while
the flow kept going, retried the dead API and exited minutes later with hundreds of lines of
tracebacks; SIGTERM to the main process alone left the server orphaned.

:func:`handle_signals` (installed by the command-line entry point for the life of the process) and
:func:`stop_on_signals` (the same for the duration of a block) handle SIGINT and SIGTERM themselves.
On the first signal it

1. marks the flow runs of this process (:func:`note_flow_run`) ``Crashed`` on the Prefect API, which
   the temporary server, started in its own session, is still there to record;
2. freezes the local Dask cluster's processes, stops the API server (SIGTERM, then SIGKILL after
   :data:`TERMINATE_WAIT_S`) and kills the Dask processes (their blocks in flight are abandoned, as
   after ``kill -9``);
3. prints one line: what was interrupted, and that rerunning the same command resumes (for a command
   that writes blocks; ``resumable=False`` of :func:`stop_on_signals`, e.g. ``neurorecon view``, says
   only what stopped);
4. exits with ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).

A second signal skips the waiting: children are killed and the process exits at once. Outputs stay
resumable because every block and file is published by one rename (the same guarantee that makes
``kill -9`` safe): a block in flight is simply redone by the rerun. A remote Dask cluster
(``dask.address``) is left running; its scheduler drops the tasks of the vanished client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = [
    "TERMINATE_WAIT_S",
    "handle_signals",
    "note_flow_run",
    "start_temporary_prefect_server",
    "stop_handling_signals",
    "stop_on_signals",
]

#: Seconds the children get to exit after SIGTERM before they are killed.
TERMINATE_WAIT_S = 3.0
#: Seconds allowed for recording the flow runs' ``Crashed`` state on the Prefect API.
API_TIMEOUT_S = 3.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict[str, Any] = {"active": False, "what": "neurorecon", "resumable": True, "flow_runs": [],
                          "stopping": None, "servers": set()}
_lock = threading.Lock()


def _handle(signum: int, frame: Any) -> None:
    with _lock:
        first = _state["stopping"] is None
        if first:
            _state["stopping"] = signum
    if not first:  # a second Ctrl-C: no more waiting
        _kill_children(wait_s=0.0)
        _exit(signum)
    threading.Thread(target=_stop, args=(signum,), name="neurorecon-stop", daemon=True).start()


def _install() -> None:
    for sig in _SIGNALS:
        signal.signal(sig, _handle)


@contextlib.contextmanager
def stop_on_signals(what: str, *, resumable: bool = True) -> Iterator[None]:
    """Handle SIGINT and SIGTERM as this module describes while the block runs (main thread only).

    ``what`` names the interrupted work in the message, e.g. ``neurorecon run configs/x.yaml``;
    ``resumable=False`` leaves out that a rerun resumes (work that writes nothing, such as a viewer).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    _state.update(active=True, what=what, resumable=resumable, flow_runs=[], stopping=None)
    _install()
    try:
        yield
    finally:
        _state["active"] = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def handle_signals(what: str) -> None:
    """Handle SIGINT and SIGTERM as this module describes for the rest of the process's life (the
    command line: a signal during interpreter exit, while Prefect stops its server, is handled too)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.update(active=True, what=what, resumable=True, flow_runs=[], stopping=None)
    _install()


def stop_handling_signals() -> None:
    """Undo :func:`handle_signals`: Python's default handlers again (for a process that called the
    command line's entry point and goes on, such as a test)."""
    _state["active"] = False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def note_flow_run() -> None:
    """Inside a flow run by a command: remember its id (it is marked ``Crashed`` if the command is
    stopped) and take SIGTERM back from Prefect's engine, whose handler would otherwise stop the flow
    only after unwinding its task runner. Does nothing outside :func:`stop_on_signals`."""
    if not _state["active"] or threading.current_thread() is not threading.main_thread():
        return
    from prefect.runtime import flow_run

    if flow_run.id:
        _state["flow_runs"].append(str(flow_run.id))
    _install()


def _stop(signum: int) -> None:
    name = signal.Signals(signum).name
    logging.disable(logging.CRITICAL)  # the local scheduler's "lost worker" chatter is not news here
    _mark_crashed(f"Interrupted by {name}")
    _kill_children(wait_s=TERMINATE_WAIT_S)
    # on a line of its own, below any progress bar left unfinished
    resume = "; finished blocks are kept — rerun the same command to resume" if _state["resumable"] else ""
    print(f"\ninterrupted ({name}): stopped {_state['what']}{resume}", file=sys.stderr, flush=True)
    _exit(signum)


def _exit(signum: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)


def _mark_crashed(message: str) -> None:
    """Set the noted flow runs that are not final to ``Crashed`` (best effort, bounded in time)."""
    if not _state["flow_runs"]:
        return

    def mark() -> None:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            for run_id in _state["flow_runs"]:
                if not client.read_flow_run(run_id).state.is_final():
                    client.set_flow_run_state(run_id, Crashed(message=message), force=True)

    worker = threading.Thread(target=_quiet, args=(mark,), name="neurorecon-crashed", daemon=True)
    worker.start()
    worker.join(API_TIMEOUT_S)


def _quiet(fn: Any) -> None:
    with contextlib.suppress(Exception):
        fn()


def _kill_children(*, wait_s: float) -> None:
    """Stop every descendant process; the caller exits right after.

    The local Dask cluster's processes are frozen first (SIGSTOP: no block advances and no nanny sees a
    worker die and starts another), then the Prefect API server gets SIGTERM and up to ``wait_s``
    seconds to close its database, then everything left is killed (the blocks in flight are redone by a
    rerun, as after ``kill -9``).
    """
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    servers = [c for c in children if c.pid in _state["servers"]]
    others = [c for c in children if c.pid not in _state["servers"]]
    for child in others:
        with contextlib.suppress(psutil.Error):
            child.suspend()
    if wait_s > 0:
        for server in servers:
            with contextlib.suppress(psutil.Error):
                server.terminate()
        psutil.wait_procs(servers, timeout=wait_s)
    for child in [*servers, *others]:
        with contextlib.suppress(psutil.Error):
            child.kill()


def start_temporary_prefect_server(timeout_s: float = 180) -> Any:
    """Start Prefect's temporary API server (``SubprocessASGIServer``) in its own session.

    A Ctrl-C in the terminal reaches the whole foreground process group; the API server must outlive it
    long enough to record that the flow run crashed, so it gets its own session, and it is stopped by
    this process (at exit, or by :func:`stop_on_signals`). On Linux it also receives SIGTERM if this
    process dies (``kill -9``), so it is never orphaned. Returns the running server.
    """
    import subprocess

    from prefect.server.api import server as prefect_server

    preexec = _parent_death_signal(signal.SIGTERM)

    class _Subprocess:  # the ``subprocess`` module as Prefect's server module sees it, with detached Popen
        def __getattr__(self, name: str) -> Any:
            return getattr(subprocess, name)

        @staticmethod
        def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:  # noqa: N802 - subprocess's name
            return subprocess.Popen(*args, start_new_session=True, preexec_fn=preexec, **kwargs)

    class _Server(prefect_server.SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            prefect_server.subprocess = _Subprocess()  # type: ignore[assignment]
            try:
                return super()._run_uvicorn_command()
            finally:
                prefect_server.subprocess = subprocess

    server = _Server()  # Prefect's per-process singleton: the flow's own client finds the same instance
    server.start(timeout=int(timeout_s))
    if server.server_process is not None:
        _state["servers"].add(server.server_process.pid)
    return server


def _parent_death_signal(sig: int) -> Any:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when its parent dies (None elsewhere).

    Everything is looked up here, in the parent: between fork and exec the child only calls ``prctl``.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:  # pragma: no cover - runs in the child
        prctl(pr_set_pdeathsig, int(sig))

    return preexec
