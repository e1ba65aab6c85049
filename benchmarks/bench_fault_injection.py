"""Fault injection: ``kill -9`` a Dask worker, or the whole run, during ``segment`` and ``run`` (issue 8).

Protocol
--------
1. One phantom (``--shape``, seed ``--phantom-seed``, chunks (16, 32, 32)) is written once to
   ``WORK/volume.zarr``.
2. Every run is the real command line, ``neurorecon segment CONFIG`` or ``neurorecon run CONFIG`` (the
   reconstruct flow: Prefect without a server, Dask ``LocalCluster`` with 2 block workers, 1 thread
   each), started as a subprocess in a new session, so the run's whole process tree (client, Dask
   workers, the temporary Prefect server) is one process group. Each invocation gets its own
   ``PREFECT_HOME`` (and a 180 s startup timeout for the temporary Prefect server). Every run of a
   command writes to the same directory ``WORK/<command>/out`` (so paths recorded in outputs, e.g.
   SWC header comments, are the same) and is moved away afterwards.
3. One uninterrupted reference run per command; its wall time is T.
4. Trials, seeded with ``random.Random(--seed)``, cycle over (command, fault):
   - ``worker``: at t ~ U(0.1 T, 0.9 T) SIGKILL one Dask worker process of the run (a
     ``multiprocessing`` spawn child in the run's process group, chosen at random; for ``run``, every
     other time among the workers hosting a Prefect task, i.e. the flow's stage drivers); the run
     goes on. It must finish by itself, or, if it exits non-zero, one rerun must finish.
   - ``run``: at t ~ U(0.1 T, 0.9 T) SIGKILL the whole process group (``os.killpg``), wait until no
     process of the group is left, then rerun the same command once; it must finish.
   With ``--targeted``, further trials (both faults) kill as soon as the first block of a later stage
   is marked done (segment: blocks, faces, relabel; run: blocks, relabel, skeletonize), stages that
   random times rarely reach (startup and prediction take most of T).
5. After each trial, compare with the reference: the voxels of ``affinities.zarr``, ``fragments.zarr``
   and ``segmentation.zarr`` (``np.array_equal``), and for ``run`` the set and bytes of
   ``skeletons/*.swc``, ``skeletons_precomputed/**`` and ``lengths.csv``. Every chunk of every Zarr
   array in the output is read (a decode error fails the trial), stray temporary files
   (``*.partial`` from zarr, ``*.tmp*`` from the block state) are counted, and processes of the run's
   group still alive 30 s after it exited are listed (then killed).

Only processes of the run's own process group are ever signalled.

    python benchmarks/bench_fault_injection.py                          # 12 trials, seed 0
    python benchmarks/bench_fault_injection.py --targeted               # + 12 stage-targeted trials
    python benchmarks/bench_fault_injection.py --trials 4 --work /tmp/fi --keep

Exits non-zero if any trial fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NEURORECON = Path(sys.executable).with_name("neurorecon")

COMMANDS = ("segment", "run")
FAULTS = ("worker", "run")
#: Signal faults: the signal, to the run's process group (a Ctrl-C or ``scancel``) or to its main process.
SIGNAL_FAULTS = ("SIGINT-group", "SIGTERM-group", "SIGINT-main", "SIGTERM-main")
#: A signalled run must exit within this many seconds (issue 18).
SIGNAL_EXIT_S = 10.0
#: The line each command prints last, once all its outputs are written.
FINAL_LINE = {"segment": "segmentation: ", "run": "report: "}
SEGMENT_STAGES = ("predict", "blocks", "faces", "relabel")
ZARR_OUTPUTS = ("affinities.zarr", "fragments.zarr", "segmentation.zarr")
#: Stages of the ``--targeted`` trials (predict, the longest stage, is reached by the random times).
TARGETED = {"segment": ("blocks", "faces", "relabel"), "run": ("blocks", "relabel", "skeletonize")}


# -- setup ----------------------------------------------------------------------------------------------


def make_phantom(work: Path, *, shape: tuple[int, int, int], seed: int) -> Path:
    """Write the phantom ``work/volume.zarr`` (chunks (16, 32, 32)) once; return its path."""
    from pipeline.io.phantom import phantom_complete, write_phantom
    from pipeline.synth import PhantomParams

    store = work / "volume.zarr"
    if not phantom_complete(store):
        write_phantom(store, PhantomParams(shape=shape, chunks=(16, 32, 32), seed=seed), overwrite=True,
                      progress=False)
    return store


def write_config(path: Path, *, raw: Path, out: Path, root: Path, block_shape: tuple[int, int, int],
                 halo_vx: tuple[int, int, int] = (4, 16, 16)) -> Path:
    """A YAML config with ``segment:``, ``dask:`` (2 workers, 1 thread) and ``output:`` sections."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "segment:\n"
        f"  raw: {raw}\n"
        f"  out: {out}\n"
        f"  block_shape: [{', '.join(map(str, block_shape))}]\n"
        f"  halo_vx: [{', '.join(map(str, halo_vx))}]\n"
        "dask:\n"
        "  n_workers: 2\n"
        "  threads_per_worker: 1\n"
        "  memory_limit: 2GiB\n"
        "output:\n"
        f"  root: {root}\n"
    )
    return path


@dataclass
class Workspace:
    """Where a command's runs go: its config, its output directory and the reference copy."""

    work: Path
    command: str
    n_invocations: int = 0

    @property
    def dir(self) -> Path:
        return self.work / self.command

    @property
    def config(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def out(self) -> Path:
        return self.dir / "out"

    @property
    def reference(self) -> Path:
        return self.dir / "reference"

    def start(self) -> tuple[subprocess.Popen, Path]:
        """Start ``neurorecon <command> CONFIG`` in a new session, with its own PREFECT_HOME and log."""
        self.n_invocations += 1
        name = f"{self.command}-{self.n_invocations:02d}"
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        home = self.work / "prefect" / name
        home.mkdir(parents=True, exist_ok=True)  # Prefect creates PREFECT_HOME but not its parents
        # A fresh PREFECT_HOME means a fresh database: on a busy 2-core machine the temporary server's
        # migrations can take longer than Prefect's default 20 s startup timeout.
        # NEURORECON__* overrides are dropped: the config file is the whole configuration.
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NEURORECON__")}
        env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(home),
                   PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
        with open(log, "wb") as fh:
            proc = subprocess.Popen([str(NEURORECON), self.command, str(self.config)], stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
                                    start_new_session=True)
        return proc, log


# -- processes ------------------------------------------------------------------------------------------


def group_alive(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group ``pgid``."""
    import psutil

    alive = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


def kill_group(proc: subprocess.Popen, *, timeout: float = 60.0) -> None:
    """SIGKILL the process group of ``proc`` (its session leader) and wait until none of it is left."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"process group {pgid} still has processes {group_alive(pgid)} after SIGKILL")
        time.sleep(0.1)


def process_tree(proc: subprocess.Popen) -> list[int]:
    """Pids of the run's main process and all its descendants, wherever their session (the temporary
    Prefect API server runs in its own)."""
    import psutil

    try:
        return [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def still_alive(pids: list[int]) -> list[int]:
    """The pids of ``pids`` that are live (non-zombie) processes."""
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def send_signal(proc: subprocess.Popen, fault: str) -> str:
    """Send ``fault`` (one of :data:`SIGNAL_FAULTS`) to the run; say what was signalled."""
    name, target = fault.split("-")
    sig = signal.Signals[name]
    if target == "group":
        os.killpg(proc.pid, sig)
        return f"{name} to process group {proc.pid}"
    os.kill(proc.pid, sig)
    return f"{name} to main process {proc.pid}"


def dask_workers(proc: subprocess.Popen) -> dict[int, bool]:
    """The Dask worker processes of a run (``multiprocessing`` spawn children in its group).

    Returns ``{pid: hosts_prefect_server}``: in the reconstruct flow a worker that has run a Prefect
    task has started its own temporary Prefect API server (a ``uvicorn`` child process).
    """
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    workers = {}
    for c in children:
        try:
            cmd = " ".join(c.cmdline())
            if "spawn_main" in cmd and "resource_tracker" not in cmd and os.getpgid(c.pid) == proc.pid:
                workers[c.pid] = any("uvicorn" in " ".join(g.cmdline()) for g in c.children())
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return dict(sorted(workers.items()))


def kill_worker(proc: subprocess.Popen, rng: random.Random, *, prefer_prefect: bool = False,
                wait_s: float = 30.0) -> str:
    """SIGKILL one Dask worker of the run, chosen with ``rng``; say which (or that there was none).

    With ``prefer_prefect``, the choice is among the workers that host a Prefect task server, if any.
    """
    deadline = time.monotonic() + wait_s
    while proc.poll() is None:
        workers = dask_workers(proc)
        if workers:
            hosts = [pid for pid, host in workers.items() if host]
            pid = rng.choice(hosts if prefer_prefect and hosts else list(workers))
            if os.getpgid(pid) != proc.pid:  # never signal anything outside the run's own group
                raise RuntimeError(f"process {pid} is not in the run's process group {proc.pid}")
            os.kill(pid, signal.SIGKILL)
            return f"worker {pid}" + (" (Prefect task host)" if workers[pid] else "")
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return "nothing (no worker found)"


def _describe(pid: int) -> str:
    import psutil

    try:
        cmd = psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return str(pid)
    return f"{pid} ({'uvicorn' if 'uvicorn' in cmd else ' '.join(cmd)[-40:]})"


def wait(proc: subprocess.Popen, *, timeout: float, grace_s: float = 30.0) -> tuple[int | None, list[str]]:
    """Wait for the run, then for the rest of its process group.

    Returns (exit status, or None if it hung past ``timeout``; the processes still alive ``grace_s``
    after the run exited, which are then killed).
    """
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return None, []
    deadline = time.monotonic() + grace_s
    while group_alive(proc.pid):
        if time.monotonic() > deadline:
            leftovers = [_describe(pid) for pid in group_alive(proc.pid)]
            kill_group(proc)
            return rc, leftovers
        time.sleep(0.1)
    return rc, []


def run_to_completion(ws: Workspace, *, timeout: float) -> tuple[int | None, float, list[str]]:
    """Run the command uninterrupted; return (exit status or None if it hung, seconds, leftover processes)."""
    t = time.perf_counter()
    proc, _ = ws.start()
    rc, leftovers = wait(proc, timeout=timeout)
    return rc, time.perf_counter() - t, leftovers


# -- what was running ---------------------------------------------------------------------------------------


def _markers(state: Path, stage: str) -> int:
    d = state / stage
    return len([p for p in d.glob("*.json") if p.stem.isdigit()]) if d.is_dir() else 0


def progress(out: Path, n_blocks: int, command: str) -> str:
    """What the run was doing, from its outputs: the first unfinished stage and its finished blocks."""
    state = out / "state"
    if not (state / "predict").is_dir():
        return "startup"
    for stage in SEGMENT_STAGES:
        if stage == "relabel" and not any(state.glob("union_t*/segments.json")):
            return "union"
        k = _markers(state, stage)
        if k < n_blocks:
            return f"{stage} {k}/{n_blocks}"
    if command == "segment":
        return "closing"
    k = _markers(state, "skeletonize")
    if not (out / "lengths.csv").is_file():
        return f"skeletonize {k}/{n_blocks}" if k < n_blocks else "fuse + write skeletons"
    return "report" if not (out / "report.html").is_file() else "closing"


# -- checks -----------------------------------------------------------------------------------------------


def zarr_arrays(root: Path) -> list[Path]:
    """Every Zarr v3 array under ``root`` (directories whose zarr.json says node_type array)."""
    import json

    found = []
    for meta in sorted(root.rglob("zarr.json")):
        try:
            if json.loads(meta.read_text()).get("node_type") == "array":
                found.append(meta.parent)
        except ValueError:
            found.append(meta.parent)  # unreadable metadata: reported by unreadable_chunks
    return found


def unreadable_chunks(root: Path) -> tuple[int, list[str]]:
    """Read every chunk of every Zarr array under ``root``; return (chunks read, problems)."""
    import zarr

    n, problems = 0, []
    for path in zarr_arrays(root):
        try:
            arr = zarr.open_array(str(path), mode="r")
        except Exception as exc:  # noqa: BLE001 - any failure to open is a finding
            problems.append(f"{path.relative_to(root)}: cannot open ({exc!r})")
            continue
        grid = [range(-(-s // c)) for s, c in zip(arr.shape, arr.chunks, strict=True)]
        for idx in np.ndindex(*[len(g) for g in grid]):
            region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, arr.chunks, arr.shape,
                                                                                 strict=True))
            try:
                arr[region]
                n += 1
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{path.relative_to(root)} chunk {idx}: {exc!r}")
    return n, problems


def stray_files(root: Path) -> list[str]:
    """Temporary files left behind by killed writers (zarr ``*.partial``, ``*.tmp*``, ``*.creating``)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".partial") or ".tmp" in p.name or ".creating" in p.name)


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


def differences(reference: Path, out: Path, command: str) -> list[str]:
    """What differs between a trial's outputs and the reference's (empty: bit-identical)."""
    from pipeline.io.omezarr import open_image

    diffs = []
    for name in ZARR_OUTPUTS:
        try:
            a = open_image(reference / name).array[...]
            b = open_image(out / name).array[...]
        except Exception as exc:  # noqa: BLE001
            diffs.append(f"{name}: {exc!r}")
            continue
        if a.dtype != b.dtype or not np.array_equal(a, b):
            n = int(np.count_nonzero(a != b)) if a.shape == b.shape else "shape"
            diffs.append(f"{name}: {n} voxels differ")
    if command == "run":
        for pattern in ("skeletons/*.swc", "skeletons_precomputed/**/*", "lengths.csv"):
            ra, rb = _files(reference, pattern), _files(out, pattern)
            if ra.keys() != rb.keys():
                diffs.append(f"{pattern}: file sets differ ({len(ra)} vs {len(rb)}, "
                             f"e.g. {sorted(ra.keys() ^ rb.keys())[:3]})")
            changed = [k for k in ra.keys() & rb.keys() if ra[k] != rb[k]]
            if changed:
                diffs.append(f"{pattern}: {len(changed)} files differ (e.g. {sorted(changed)[:3]})")
            if not ra:
                diffs.append(f"{pattern}: no files in the reference")
    return diffs


# -- trials -----------------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One fault-injection trial and what it found."""

    index: int
    command: str
    fault: str
    kill_at_s: float
    trigger: str = "random time"
    killed: str = ""
    at_kill: str = ""
    first_rc: int | None = None
    reruns: int = 0
    rerun_rc: int | None = None
    rerun_s: float = 0.0
    total_s: float = 0.0
    diffs: list[str] = field(default_factory=list)
    chunks_read: int = 0
    chunk_problems: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    exit_s: float | None = None  # signal faults: seconds from the signal to the run's exit
    last_line: str = ""  # signal faults: the last line the run printed

    @property
    def completed(self) -> bool:
        final = self.rerun_rc if self.reruns else self.first_rc
        return final == 0

    @property
    def identical(self) -> bool:
        return self.completed and not self.diffs

    @property
    def readable(self) -> bool:
        return self.completed and not self.chunk_problems

    @property
    def stopped_cleanly(self) -> bool:
        """A signal fault: the run exited within :data:`SIGNAL_EXIT_S` with 128 + the signal, its last
        line says it was interrupted, and nothing it started outlived it (other faults: True)."""
        if self.fault not in SIGNAL_FAULTS or self.killed.startswith("nothing"):
            return True
        name = self.fault.split("-")[0]
        if self.exit_s is None or self.exit_s > SIGNAL_EXIT_S or self.leftovers:
            return False
        if self.first_rc == 128 + signal.Signals[name]:
            return self.last_line.startswith(f"interrupted ({name})")
        # The signal came after the command had written everything and printed its last line: Python
        # restores the default handlers while the interpreter shuts down, so the process ends at once,
        # killed by the signal (or with 0 if it was already past that point). Nothing was interrupted.
        return (self.first_rc in (0, -signal.Signals[name])
                and self.last_line.startswith(FINAL_LINE.get(self.command, "\0")))

    @property
    def ok(self) -> bool:
        return self.identical and self.readable and self.stopped_cleanly


def run_trial(ws: Workspace, *, index: int, fault: str, kill_at_s: float, rng: random.Random, n_blocks: int,
              timeout: float, after_marker: str | None = None, prefer_prefect: bool = False,
              rerun: bool = True) -> Trial:
    """Start the command, inject the fault, rerun if needed, and check the outputs against the reference.

    The fault comes ``kill_at_s`` seconds after the start, or, with ``after_marker``, as soon as the
    first block of that stage is marked done (``kill_at_s`` then records when that was). Processes of
    the run's group that outlive it by 30 s are recorded (and killed).
    """
    if ws.out.exists():
        shutil.rmtree(ws.out)
    trial = Trial(index, ws.command, fault, kill_at_s)
    t0 = time.perf_counter()
    proc, log = ws.start()
    if after_marker is None:
        try:
            proc.wait(timeout=kill_at_s)
        except subprocess.TimeoutExpired:
            pass
    else:
        while proc.poll() is None and not _markers(ws.out / "state", after_marker):
            if time.perf_counter() - t0 > timeout:
                break
            time.sleep(0.05)
        trial.kill_at_s = time.perf_counter() - t0
        trial.trigger = f"1st {after_marker} block done"
    tree: list[int] = []
    if proc.poll() is not None:
        trial.killed, trial.at_kill = "nothing (run had ended)", "finished"
    else:
        trial.at_kill = progress(ws.out, n_blocks, ws.command)
        tree = process_tree(proc)
        if fault == "run":
            kill_group(proc)
            trial.killed = f"process group {proc.pid}"
        elif fault in SIGNAL_FAULTS:
            signalled = time.perf_counter()
            trial.killed = send_signal(proc, fault)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            trial.exit_s = time.perf_counter() - signalled
        else:
            trial.killed = kill_worker(proc, rng, prefer_prefect=prefer_prefect)
    trial.first_rc, trial.leftovers = wait(proc, timeout=timeout)
    # processes outside the group too (the Prefect API server has its own session): gone within 10 s
    deadline = time.monotonic() + SIGNAL_EXIT_S
    while still_alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in still_alive(tree):
        trial.leftovers.append(_describe(pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if fault in SIGNAL_FAULTS:
        lines = log.read_text(errors="replace").strip().splitlines()
        trial.last_line = lines[-1] if lines else ""
    if trial.first_rc != 0 and rerun:
        trial.reruns = 1
        trial.rerun_rc, trial.rerun_s, more = run_to_completion(ws, timeout=timeout)
        trial.leftovers += more
    trial.total_s = time.perf_counter() - t0
    if trial.completed:
        trial.diffs = differences(ws.reference, ws.out, ws.command)
        trial.chunks_read, trial.chunk_problems = unreadable_chunks(ws.out)
    trial.strays = stray_files(ws.out) if ws.out.exists() else []
    return trial


def _rc(rc: int | None) -> str:
    if rc is None:
        return "hung"
    return "SIGKILL" if rc == -signal.SIGKILL else str(rc)


def table(trials: list[Trial]) -> str:
    """The markdown table of the trials."""
    lines = [
        "| # | command | fault | trigger | kill at (s) | running at the kill | killed | exit after fault | "
        "rerun | rerun (s) | identical | chunks readable | stray tmp files | processes outliving the run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        rerun = f"exit {_rc(t.rerun_rc)}" if t.reruns else "not needed"
        ident = "yes" if t.identical else ("no: " + "; ".join(t.diffs) if t.completed else "no (unfinished)")
        readable = f"yes ({t.chunks_read})" if t.readable else ("no: " + "; ".join(t.chunk_problems[:2])
                                                                 if t.completed else "—")
        exit_in = "" if t.exit_s is None else f" (exit in {t.exit_s:.1f} s)"
        lines.append(
            f"| {t.index} | {t.command} | {t.fault} | {t.trigger} | {t.kill_at_s:.1f} | {t.at_kill} | "
            f"{t.killed}{exit_in} | {_rc(t.first_rc)} | {rerun} | {t.rerun_s:.1f} | {ident} | {readable} | "
            f"{len(t.strays)} | {', '.join(t.leftovers) or 'none'} |"
        )
    return "\n".join(lines)


def plan(n_trials: int, seed: int, reference_s: dict[str, float],
         faults: tuple[str, ...] = FAULTS) -> list[tuple[str, str, float]]:
    """(command, fault, kill time) of each trial: the combinations in turn, times ~ U(0.1 T, 0.9 T)."""
    rng = random.Random(seed)
    combos = [(c, f) for c in reference_s for f in faults]
    out = []
    for i in range(n_trials):
        command, fault = combos[i % len(combos)]
        out.append((command, fault, rng.uniform(0.1, 0.9) * reference_s[command]))
    return out


def n_blocks_of(shape: tuple[int, int, int], block_shape: tuple[int, int, int]) -> int:
    return int(np.prod([-(-s // b) for s, b in zip(shape, block_shape, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12, help="number of trials (cycling over command x fault)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times and worker choices")
    ap.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    ap.add_argument("--faults", nargs="+", choices=FAULTS + SIGNAL_FAULTS, default=list(FAULTS),
                    help="faults to cycle over: SIGKILL a worker or the run's group, or a signal to the "
                         "group or the main process (which must then exit within 10 s)")
    ap.add_argument("--shape", type=int, nargs=3, default=(32, 128, 128), help="phantom shape z y x")
    ap.add_argument("--block", type=int, nargs=3, default=(32, 64, 64), help="block shape z y x")
    ap.add_argument("--phantom-seed", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a new one in /tmp)")
    ap.add_argument("--targeted", action="store_true",
                    help="then, per command, stage and fault, one trial killed when the stage's first "
                         "block is done (stages the random times rarely reach)")
    ap.add_argument("--keep", action="store_true", help="keep every trial's output (WORK/<command>/trial_NN)")
    args = ap.parse_args()

    import tempfile

    work = (args.work or Path(tempfile.mkdtemp(prefix="neurorecon_faults_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    shape, block = tuple(args.shape), tuple(args.block)
    n_blocks = n_blocks_of(shape, block)
    print(f"# bench_fault_injection  cpus={os.cpu_count()}  seed={args.seed}  work={work}\n")
    raw = make_phantom(work, shape=shape, seed=args.phantom_seed)
    spaces, reference_s = {}, {}
    for command in args.commands:
        ws = Workspace(work, command)
        write_config(ws.config, raw=raw, out=ws.out, root=work, block_shape=block)
        for d in (ws.out, ws.reference):
            if d.exists():
                shutil.rmtree(d)
        rc, seconds, leftovers = run_to_completion(ws, timeout=1800)
        if leftovers:
            print(f"reference `neurorecon {command}` left processes behind: {leftovers}")
        if rc != 0:
            sys.exit(f"reference run of `neurorecon {command}` failed (exit {_rc(rc)}); see {work}/logs")
        ws.out.rename(ws.reference)
        spaces[command], reference_s[command] = ws, seconds
        print(f"reference `neurorecon {command}`: {seconds:.1f} s "
              f"({n_blocks} blocks of {block}, volume {shape})")
    print()

    rng = random.Random(args.seed + 1)  # worker choices
    trials = []
    n_worker_kills = dict.fromkeys(spaces, 0)
    schedule = [(c, f, t, None) for c, f, t in plan(args.trials, args.seed, reference_s, tuple(args.faults))]
    if args.targeted:
        schedule += [(c, f, 0.0, stage) for c in spaces for stage in TARGETED[c] for f in FAULTS]
    for i, (command, fault, kill_at, after_marker) in enumerate(schedule, 1):
        ws = spaces[command]
        if fault == "worker":
            n_worker_kills[command] += 1
        # `run`: every other worker kill goes to a worker hosting a Prefect task (the flow's stage driver)
        prefer = command == "run" and fault == "worker" and n_worker_kills[command] % 2 == 1
        trial = run_trial(ws, index=i, fault=fault, kill_at_s=kill_at, rng=rng, n_blocks=n_blocks,
                          timeout=max(300.0, 8 * reference_s[command]), prefer_prefect=prefer,
                          after_marker=after_marker)
        trials.append(trial)
        status = "ok" if trial.ok else "FAILED"
        print(f"trial {i:2d} {command:8s} {fault:13s} kill at {trial.kill_at_s:5.1f} s ({trial.trigger}) "
              f"during [{trial.at_kill}]: {status}  ({trial.total_s:.0f} s)", flush=True)
        if args.keep:
            dest = ws.dir / f"trial_{i:02d}"
            if dest.exists():
                shutil.rmtree(dest)
            ws.out.rename(dest)
    print()
    print(table(trials))
    n_ok = sum(t.ok for t in trials)
    reruns = sum(t.reruns for t in trials)
    print(f"\n{n_ok}/{len(trials)} trials bit-identical to the uninterrupted run with every chunk readable; "
          f"{reruns} needed a rerun; reference times: "
          + ", ".join(f"{c} {s:.1f} s" for c, s in reference_s.items())
          + f"; stray temporary files left in outputs: {sum(len(t.strays) for t in trials)}; "
          f"trials with processes outliving their run: {sum(bool(t.leftovers) for t in trials)}")
    for t in trials:
        if t.strays:
            print(f"  trial {t.index} strays: {t.strays[:5]}")
    if n_ok != len(trials):
        sys.exit(1)


if __name__ == "__main__":
    main()
