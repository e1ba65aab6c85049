"""Whole-brain scale, part (a): the segment stage's union alone, on synthetic block records.

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

Parts (b) (the whole chain at 1x and 8x volume) and (c) (the extrapolation to a whole brain) are not
written yet (issue 20).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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
            "peak_GB": peak_rss_bytes() / 1e9, "import_GB": baseline / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--fragments", type=int, default=20, help="fragments per block (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="where the records go (default: a temp dir)")
    ap.add_argument("--child", choices=["write", "union"], default=None, help=argparse.SUPPRESS)
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
    print("| blocks | grid | fragments | segments | union (s) | ms / block | widest node (pairs) | "
          "union state (MB) | relabel task read (ms) | peak RSS (GB) | above imports (MB) | "
          "peak vs smallest |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        grid = "x".join(map(str, r["grid"]))
        print(f"| {r['blocks']:,} | {grid} | {r['fragments']:,} | {r['segments']:,} | "
              f"{r['union_s']:.1f} | {1e3 * r['union_s'] / r['blocks']:.1f} | {r['widest_node']:,} | "
              f"{r['disk_MB']:.0f} | {1e3 * r['relabel_read_s']:.1f} | {r['peak_GB']:.2f} | "
              f"{1e3 * (r['peak_GB'] - r['import_GB']):.0f} | "
              f"{r['peak_GB'] / base['peak_GB']:.2f}x |")


if __name__ == "__main__":
    main()
