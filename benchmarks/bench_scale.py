"""Whole-brain scale: (a) the segment stage's union on synthetic records, (b) the whole chain at 1x and 8x,
(c) the extrapolation to a whole mouse brain.

**Part (a)** (``--part a``, the default).

What ``neurorecon segment`` does between its block stages, for 10³ to 10⁶ blocks: the union at a threshold,
level by level over an octree of blocks (:func:`flows.stages.union.union_volume`: block and node tasks,
each reading its own records), then what one relabel task reads to build its block's table
(:func:`flows.stages.union.block_lut`). The driver only schedules; its memory is what this measures. The
tasks run serially in the same process, so the peak resident memory (``VmHWM``) is the driver's plus the
largest task's; each size runs in a fresh process, after the records were written by another, and every
row prints its ratio to the smallest size, measured in the same run.

The records are shaped like a sparse-labelled brain: ``--fragments`` fragments per block, chained inside
the block with random scores (about half merge at the threshold); across every face, the first fragments
of the two blocks (one object through every block: it spans the whole volume), the second ones along x
(objects that run the length of the volume) and a few random pairs. No volume is read or written.

    python benchmarks/bench_scale.py                          # 10^3, 10^4 blocks (a minute)
    python benchmarks/bench_scale.py --blocks 1000 100000     # 10^5: about 25 minutes on 2 cores

Each block costs about 10 ms of task time, almost all of it reading and writing its small records
(fsynced); 10⁶ blocks therefore take about 3 hours serially here, a few minutes on a cluster.

**Part (b)** (``--part b``): ``neurorecon run`` (predict, segment, skeletonize, report; no ground
truth) on a generated neuron phantom of 1x and 8x volume (``--base``, doubled along each axis), on a
LocalCluster of 2 one-thread workers. Every process of the run is sampled for its resident memory; the
wall time is divided by that of the U-Net forward pass alone over the same volume (one process, 2
threads, the same tiles, the raw already in memory).

**Part (c)** (``--part c``, after b): an extrapolation from the 8x run to a whole mouse brain
(1.3 x 10^12 voxels): CPU core-hours per stage family, storage per product, and GPU-hours from the
network's FLOPs per voxel (counted) at an assumed sustained rate (an estimate until measured on a card).

    python benchmarks/bench_scale.py --part b c               # 1x = 64 x 256 x 256: about 20 minutes
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent

#: Voxels per block (its fragment-id range): no volume exists, so small blocks keep keys small.
BLOCK_SHAPE = (4, 8, 8)
THRESHOLD = 0.5


def grid_for(n_blocks: int) -> tuple[int, int, int]:
    """A near-cubic grid of about ``n_blocks`` blocks."""
    side = round(n_blocks ** (1 / 3))
    return side, side, max(1, round(n_blocks / side**2))


def write_records(state: str, grid: tuple[int, int, int], fragments: int, seed: int) -> None:
    """The records the ``blocks`` and ``faces`` stages would leave, block by block."""
    import numpy as np

    from pipeline.blocks import block_grid
    from pipeline.io.blockstate import BlockState
    from pipeline.segment.blockwise import BlockDecisions, RegionEdges

    rng = np.random.default_rng(seed)
    shape = tuple(g * b for g, b in zip(grid, BLOCK_SHAPE, strict=True))
    per_block = int(np.prod(BLOCK_SHAPE))
    st_blocks, st_faces = BlockState(state, "blocks"), BlockState(state, "faces")
    chain = np.arange(fragments - 1)
    for b in block_grid(shape, block_shape=BLOCK_SHAPE):
        first = b.id * per_block + 1
        local = np.sort(rng.choice(per_block, size=fragments, replace=False))
        voxel = np.stack(np.unravel_index(local, BLOCK_SHAPE), 1) + [s.start for s in b.write]
        pairs = np.stack([chain + first, chain + first + 1], 1).astype(np.uint64)
        inner = RegionEdges(pairs, rng.random(len(pairs), dtype=np.float32))
        st_blocks.save_records(b.id, decisions=BlockDecisions(inner, (None,) * 3, (None,) * 3, voxel))
        st_blocks.mark_done(b.id, {"n_fragments": fragments})
        face, scores = [], []
        for d in range(3):
            if b.index[d] == 0:
                continue
            index = list(b.index)
            index[d] -= 1
            low = int(np.ravel_multi_index(index, grid)) * per_block + 1
            extra = rng.integers(0, fragments, size=(3, 2))
            face.append([[low, first]] + [[low + e[0], first + e[1]] for e in extra])
            scores.append([0.0] + list(rng.random(3)))
            if d == 2:
                face[-1].append([low + 1, first + 1])
                scores[-1].append(0.2 if rng.random() < 0.9 else 0.9)
        pairs = np.array([p for f in face for p in f], np.uint64).reshape(-1, 2)
        score = np.array([s for f in scores for s in f], np.float32)
        order = np.unique(pairs, axis=0, return_index=True)[1]
        st_faces.save_records(b.id, edges=RegionEdges(pairs[order], score[order]))
        st_faces.mark_done(b.id, {})


def child_union(state: str, grid: tuple[int, int, int]) -> dict:
    """The union over the records in ``state``, in this (fresh) process."""
    import numpy as np

    from flows.stages.union import block_lut, union_volume
    from pipeline.blocks import block_grid
    from pipeline.inference.memory import peak_rss_bytes
    from pipeline.io.blockstate import BlockState

    shape = tuple(g * b for g, b in zip(grid, BLOCK_SHAPE, strict=True))
    per_block = int(np.prod(BLOCK_SHAPE))
    blocks = block_grid(shape, block_shape=BLOCK_SHAPE)
    baseline = peak_rss_bytes()
    t0 = time.perf_counter()
    n_segments = union_volume(state, "union_t0.5", blocks, threshold=THRESHOLD, per_block=per_block,
                              volume_shape=shape, block_shape=BLOCK_SHAPE, client=None, max_retries=0,
                              progress=False)
    t_union = time.perf_counter() - t0
    peak = peak_rss_bytes()  # the union's: what follows (the table below's figures) is the benchmark's own
    widest = 0  # the most crossing pairs any node holds (its task's input)
    for step in Path(state, "union_t0.5").glob("up*"):
        st = BlockState(state, f"union_t0.5/{step.name}")
        widest = max([widest] + [st.info(i)["crossing"] for i in st.done_ids()])
    mid = blocks[len(blocks) // 2]
    t1 = time.perf_counter()
    lut = block_lut(state, "union_t0.5", mid, per_block=per_block, volume_shape=shape,
                    block_shape=BLOCK_SHAPE, grid=grid)
    t_read = time.perf_counter() - t1
    return {"blocks": len(blocks), "grid": list(grid), "fragments": len(blocks) * int(lut.fragments.size),
            "segments": n_segments, "union_s": t_union, "relabel_read_s": t_read, "widest_node": widest,
            "peak_GB": peak / 1e9, "import_GB": baseline / 1e9}


# -- part (b): the whole chain at 1x and 8x ---------------------------------------------------------------

#: A whole mouse brain at 1.5 x 0.5 x 0.5 µm (issue 20).
BRAIN_VOXELS = 1.3e12
RUN_BLOCK = (32, 128, 128)
RUN_TILE = (16, 128, 128)


def run_config(raw: Path, out: Path) -> str:
    return f"""segment:
  raw: {raw}
  out: {out}
  block_shape: {list(RUN_BLOCK)}
  tile_shape: {list(RUN_TILE)}
  halo_vx: [4, 16, 16]
  device: cpu
dask:
  n_workers: 2
  threads_per_worker: 1
  memory_limit: 4GiB
skeletonize:
  block_shape: [64, 256, 256]
report:
  figures: false
output:
  root: {out.parent}
"""


def sample_tree(proc: subprocess.Popen, every_s: float = 0.5) -> dict:
    """Wait for ``proc``, sampling the resident memory of it and every descendant: the peak of the
    driver (``proc``) and the largest peak of any other process (Dask's workers, nanny, scheduler)."""
    import psutil

    root = psutil.Process(proc.pid)
    peaks: dict[int, int] = {}
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for q in procs:
            try:
                peaks[q.pid] = max(peaks.get(q.pid, 0), q.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(every_s)
    others = [v for k, v in peaks.items() if k != proc.pid]
    return {"driver_GB": peaks.get(proc.pid, 0) / 1e9, "worker_GB": max(others, default=0) / 1e9,
            "n_processes": len(peaks)}


def forward_alone(raw: str) -> dict:
    """The U-Net forward pass alone over the whole volume: one process, 2 threads, the run's tiles."""
    import numpy as np
    import torch

    from flows.preflight import model_path
    from pipeline.data.normalize import normalize_intensity
    from pipeline.inference import predict_region
    from pipeline.inference.predict import for_inference
    from pipeline.io.checkpoint import load_model
    from pipeline.io.omezarr import open_image
    from pipeline.segment.config import SegmentConfig

    torch.set_num_threads(2)
    image = open_image(raw)
    data = np.asarray(image.reader[...])
    low, high = np.percentile(data, [1.0, 99.9])
    norm = normalize_intensity(data, low=float(low), high=float(high))
    model, _ = load_model(model_path(SegmentConfig(raw=raw, out="unused")), device="cpu")
    model = for_inference(model)
    region = tuple(slice(0, s) for s in data.shape)
    t = time.perf_counter()
    predict_region(model, lambda r: norm[r], volume_shape=data.shape, region=region, tile_shape=RUN_TILE)
    return {"forward_s": time.perf_counter() - t}


def flops_per_voxel() -> float:
    """Multiply-adds x 2 of the shipped model per output voxel, counted by torch on one tile."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from flows.preflight import model_path
    from pipeline.io.checkpoint import load_model
    from pipeline.segment.config import SegmentConfig

    model, _ = load_model(model_path(SegmentConfig(raw="unused.zarr", out="unused")), device="cpu")
    ctx = model.context
    shape = tuple(t + 2 * c for t, c in zip(RUN_TILE, ctx, strict=True))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((1, 1, *shape)))
    return counter.get_total_flops() / float(np.prod(RUN_TILE))


def part_b(base: tuple[int, int, int], workdir: Path) -> list[dict]:
    rows = []
    for factor in (1, 2):
        shape = tuple(b * factor for b in base)
        root = workdir / f"chain_{factor}x"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        synth = root / "synth.yaml"
        synth.write_text(f"synth:\n  kind: neurons\n  shape: {list(shape)}\n"
                         "  voxel_size_um: [1.5, 0.5, 0.5]\n"
                         f"  chunks: {list(RUN_BLOCK)}\n  seed: 11\n  n_neurons: {4 * factor**3}\n"
                         f"  n_ais: {4 * factor**3}\noutput:\n  root: {root}\n")
        raw = root / "phantom.zarr"
        made = subprocess.run([str(BIN / "neurorecon"), "synth", "--config", str(synth), "--out", str(raw)],
                              capture_output=True, text=True)
        if made.returncode:
            raise SystemExit(f"neurorecon synth failed: {made.stderr.strip()[-2000:]}")
        config = root / "run.yaml"
        config.write_text(run_config(raw, root / "run"))
        t = time.perf_counter()
        proc = subprocess.Popen([str(BIN / "neurorecon"), "run", str(config)], stdout=subprocess.DEVNULL,
                                stderr=open(root / "run.log", "w"))  # noqa: SIM115 - closed with the process
        memory = sample_tree(proc)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"neurorecon run failed at {factor}x; see {root / 'run.log'}")
        out = subprocess.run([sys.executable, __file__, "--child", "forward", "--state", str(raw)],
                             capture_output=True, text=True, check=True)
        forward = json.loads(out.stdout.strip().splitlines()[-1])["forward_s"]
        sizes = {name: sum(f.stat().st_size for f in (root / "run" / name).rglob("*") if f.is_file())
                 for name in ("affinities.zarr", "fragments.zarr", "segmentation.zarr", "skeletons",
                              "skeletons_precomputed", "state")}
        rows.append({"factor": factor, "shape": shape, "voxels": int(np.prod(shape)), "wall_s": wall,
                     "forward_s": forward, **memory, "bytes": sizes})
        print(f"  {factor}x: {wall:.0f} s (forward alone {forward:.0f} s)", file=sys.stderr, flush=True)
    return rows


def table(columns: list[str], rows: list[list[str]]) -> None:
    """Print a markdown table."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_b(rows: list[dict]) -> None:
    print("the whole chain (`neurorecon run`: predict, segment, skeletonize, report; no ground truth) on 2 "
          "one-thread Dask workers; forward alone: one process, 2 threads, same tiles")
    table(["volume", "voxels", "wall (s)", "forward alone (s)", "wall / forward", "driver peak (GB)",
           "largest other process peak (GB)", "processes"],
          [["x".join(map(str, r["shape"])), f"{r['voxels']:,}", f"{r['wall_s']:.0f}", f"{r['forward_s']:.0f}",
            f"{r['wall_s'] / r['forward_s']:.2f}", f"{r['driver_GB']:.2f}", f"{r['worker_GB']:.2f}",
            str(r["n_processes"])] for r in rows])
    if len(rows) == 2:
        a, b = rows
        peak = max(b["driver_GB"], b["worker_GB"]) / max(a["driver_GB"], a["worker_GB"])
        print(f"\n8x / 1x: time {b['wall_s'] / a['wall_s']:.2f} (target <= 8.8), peak RSS {peak:.2f} "
              f"(target <= 1.1); wall / forward at 8x {b['wall_s'] / b['forward_s']:.2f} (target <= 1.3)")


def print_c(row: dict, *, gpu_tflops: float, flops: float) -> None:
    scale = BRAIN_VOXELS / row["voxels"]
    cores = 2
    print(f"\nextrapolated to a whole mouse brain ({BRAIN_VOXELS:.1e} voxels) from the "
          f"{'x'.join(map(str, row['shape']))} run ({row['voxels']:,} voxels; linear in voxels, as (a) and "
          "the 8x/1x ratios support)")
    print("| quantity | whole brain |")
    print("|---|---|")
    print(f"| whole chain, CPU core-hours (these cores) | {row['wall_s'] * cores * scale / 3600:,.0f} |")
    print(f"| U-Net forward alone, CPU core-hours | {row['forward_s'] * cores * scale / 3600:,.0f} |")
    print(f"| everything after the network, CPU core-hours | "
          f"{max(row['wall_s'] - row['forward_s'], 0) * cores * scale / 3600:,.0f} |")
    print(f"| U-Net forward, GPU-hours (**estimate**: {flops / 1e6:.2f} MFLOP per voxel counted, at an "
          f"assumed {gpu_tflops:g} TFLOP/s sustained) | "
          f"{flops * BRAIN_VOXELS / (gpu_tflops * 1e12) / 3600:,.0f} |")
    for name, size in row["bytes"].items():
        print(f"| storage: {name} (TB; {size / row['voxels']:.3f} bytes per voxel here) | "
              f"{size * scale / 1e12:,.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", choices=["a", "b", "c"], default=["a"])
    ap.add_argument("--base", type=int, nargs=3, default=[64, 256, 256], help="part b's 1x volume (z y x)")
    ap.add_argument("--gpu-tflops", type=float, default=100.0,
                    help="part c: assumed sustained GPU throughput, TFLOP/s (default 100: an H100 in bf16 "
                         "at about 10 %% of its dense peak, typical of 3-D U-Nets)")
    ap.add_argument("--blocks", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--fragments", type=int, default=20, help="fragments per block (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="where the records go (default: a temp dir)")
    ap.add_argument("--child", choices=["write", "union", "forward"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--state", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--grid", type=int, nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not 2 <= args.fragments <= 256:
        ap.error(f"--fragments must be in 2..256 (a block's id range is {BLOCK_SHAPE}); got {args.fragments}")
    if args.child == "write":
        write_records(args.state, tuple(args.grid), args.fragments, args.seed)
        return
    if args.child == "union":
        print(json.dumps(child_union(args.state, tuple(args.grid))))
        return
    if args.child == "forward":
        print(json.dumps(forward_alone(args.state)))
        return
    if "b" in args.part or "c" in args.part:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
        rows = part_b(tuple(args.base), workdir)
        print_b(rows)
        if "c" in args.part:
            print_c(rows[-1], gpu_tflops=args.gpu_tflops, flops=flops_per_voxel())
        if "a" not in args.part:
            return
    rows = []
    for n in sorted(args.blocks):
        if n < 8:
            ap.error(f"--blocks must be at least 8 each; got {n}")
        grid = grid_for(n)
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            common = ["--state", tmp, "--grid", *map(str, grid)]
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--child", "write", "--fragments", str(args.fragments),
                            "--seed", str(args.seed), *common], check=True)
            t_write = time.perf_counter() - t
            out = subprocess.run([sys.executable, __file__, "--child", "union", *common], capture_output=True,
                                 text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["disk_MB"] = sum(p.stat().st_size for p in Path(tmp, "union_t0.5").rglob("*")
                                 if p.is_file()) / 1e6
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append(row)
        print(f"  {row['blocks']} blocks done (records written in {t_write:.0f} s)", file=sys.stderr,
              flush=True)
    base = rows[0]
    print(f"segment's union over an octree of blocks, on synthetic block records; {args.fragments} "
          f"fragments per block; tasks run serially in the driver's process; ratios to {base['blocks']:,} "
          "blocks, same run")
    table(["blocks", "grid", "fragments", "segments", "union (s)", "ms / block", "widest node (pairs)",
           "union state (MB)", "relabel task read (ms)", "peak RSS (GB)", "above imports (MB)",
           "peak vs smallest"],
          [[f"{r['blocks']:,}", "x".join(map(str, r["grid"])), f"{r['fragments']:,}", f"{r['segments']:,}",
            f"{r['union_s']:.1f}", f"{1e3 * r['union_s'] / r['blocks']:.1f}", f"{r['widest_node']:,}",
            f"{r['disk_MB']:.0f}", f"{1e3 * r['relabel_read_s']:.1f}", f"{r['peak_GB']:.2f}",
            f"{1e3 * (r['peak_GB'] - r['import_GB']):.0f}", f"{r['peak_GB'] / base['peak_GB']:.2f}x"]
           for r in rows])


if __name__ == "__main__":
    main()
