"""Whole-brain scale, part (a): the segment stage's global steps alone, on synthetic block records.

What the driver of ``neurorecon segment`` does between the block stages, for 10³ to 10⁶ blocks: gather every
block's fragment ids, first voxels and scored pairs (with the face pairs), take the union at a threshold
(:func:`pipeline.segment.agglomerate.union_lut`), save the table (its record and the ``.npy`` columns the
relabel tasks memory-map), and what one relabel task then reads (:func:`flows.stages.segment._block_lut`).
Each size runs in a fresh process, so its peak resident memory (``VmHWM``) is its own; every row prints its
ratio to the smallest size, measured in the same run.

The records are shaped like a sparse-labelled brain: ``--fragments`` fragments per block, chained inside
the block with random scores (about half merge at the threshold), one object that runs through every block
(its fragment pairs across all block faces in raster order, so it spans the whole volume), and a second
family of objects along x. No volume is read or written: this is the driver alone.

    python benchmarks/bench_scale.py                         # 10^3, 10^4, 10^5 blocks
    python benchmarks/bench_scale.py --blocks 1000 1000000   # up to 10^6 (a few GB, minutes)

Parts (b) (the whole chain at 1x and 8x volume) and (c) (the extrapolation to a whole brain) are not
written yet (issue 20).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Voxels per block, the fragment-id range of each block (a 32 x 256 x 256 block).
PER_BLOCK = 32 * 256 * 256
THRESHOLD = 0.5


def child(n_blocks: int, per_block_fragments: int, seed: int) -> dict:
    """One size, in this (fresh) process."""
    import numpy as np

    from flows.stages.segment import _block_lut, _save_lut
    from pipeline.inference.memory import peak_rss_bytes
    from pipeline.io.blockstate import BlockState
    from pipeline.segment.agglomerate import union_lut
    from pipeline.segment.blockwise import Lut, RegionEdges

    rng = np.random.default_rng(seed)
    f = per_block_fragments
    baseline = peak_rss_bytes()
    t0 = time.perf_counter()
    # the block records, as the blocks stage leaves them: ids, first voxels, scored pairs per block
    offsets = np.arange(n_blocks, dtype=np.uint64) * np.uint64(PER_BLOCK)
    ids = (offsets[:, None] + np.arange(1, f + 1, dtype=np.uint64)[None, :]).ravel()
    first_voxel = rng.integers(0, 2**20, size=(ids.size, 3), dtype=np.int64)
    inner = np.stack([ids.reshape(n_blocks, f)[:, :-1].ravel(), ids.reshape(n_blocks, f)[:, 1:].ravel()], 1)
    inner_scores = rng.random(len(inner), dtype=np.float32)
    # faces: fragment 1 of each block to fragment 1 of the next (one object through every block), and
    # fragment 2 to fragment 2 of the next along the raster (long objects)
    first = offsets + np.uint64(1)
    through = np.stack([first[:-1], first[1:]], 1)
    second = offsets + np.uint64(2)
    along = np.stack([second[:-1], second[1:]], 1)[rng.random(max(n_blocks - 1, 0)) < 0.9]
    edges = RegionEdges.concat([
        RegionEdges(inner, inner_scores),
        RegionEdges(through, np.zeros(len(through), np.float32)),
        RegionEdges(along, np.full(len(along), 0.2, np.float32)),
    ])
    t_records = time.perf_counter() - t0
    t1 = time.perf_counter()
    lut = Lut(*union_lut(ids, [edges.at(THRESHOLD)], first_voxel=first_voxel))
    t_union = time.perf_counter() - t1
    n_segments = int(lut.segments.max())
    with tempfile.TemporaryDirectory() as tmp:
        union = BlockState(tmp, "union_t0.5")
        t2 = time.perf_counter()
        _save_lut(union, lut)
        t_save = time.perf_counter() - t2
        table_bytes = int(lut.fragments.nbytes + lut.segments.nbytes)
        del lut, edges, inner, inner_scores, first_voxel, ids
        mid = n_blocks // 2
        t3 = time.perf_counter()
        part = _block_lut(tmp, "union_t0.5", mid * PER_BLOCK + 1, (mid + 1) * PER_BLOCK)
        t_read = time.perf_counter() - t3
        part_bytes = int(part.fragments.nbytes + part.segments.nbytes)
    return {"blocks": n_blocks, "fragments": n_blocks * f, "segments": n_segments,
            "records_s": t_records, "union_s": t_union, "save_s": t_save, "relabel_read_s": t_read,
            "table_MB": table_bytes / 1e6, "relabel_task_reads_kB": part_bytes / 1e3,
            "peak_GB": peak_rss_bytes() / 1e9, "import_GB": baseline / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--fragments", type=int, default=20, help="fragments per block (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fragments < 2:
        ap.error(f"--fragments must be at least 2; got {args.fragments}")
    if args.child is not None:
        print(json.dumps(child(args.child, args.fragments, args.seed)))
        return
    rows = []
    for n in sorted(args.blocks):
        if n < 2:
            ap.error(f"--blocks must be at least 2 each; got {n}")
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--fragments", str(args.fragments),
                              "--seed", str(args.seed)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {n} blocks done", file=sys.stderr, flush=True)
    base = rows[0]
    print(f"segment's global steps on synthetic block records; {args.fragments} fragments per block; "
          f"ratios to {base['blocks']} blocks, same run")
    print("| blocks | fragments | segments | union (s) | µs / block | save (s) | table (MB) | "
          "relabel task reads (kB) | driver peak RSS (GB) | peak vs smallest |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["records_s"] + r["union_s"] + r["save_s"]
        print(f"| {r['blocks']:,} | {r['fragments']:,} | {r['segments']:,} | {r['union_s']:.2f} | "
              f"{1e6 * total / r['blocks']:.1f} | {r['save_s']:.2f} | {r['table_MB']:.1f} | "
              f"{r['relabel_task_reads_kB']:.2f} | {r['peak_GB']:.2f} | "
              f"{r['peak_GB'] / base['peak_GB']:.2f}x |")


if __name__ == "__main__":
    main()
