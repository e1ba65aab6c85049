"""Block-wise segmentation benchmarks (issue 5).

(a) scaling: time and peak RSS of the Zarr path (`flows.stages.segment.segment_volume`, serial) on a phantom
    volume and on the same phantom mirrored to 8x the size (2x per axis: same density), same block
    shape — targets: time ratio <= 8.8, RSS ratio <= 1.1;
(b) block-wise segmentation vs one whole-volume waterz call on the same affinities (target <= 1.2x),
    on affinities derived from the real 512^3 EM segmentation (../shared/data/em) with noise;
(c) per-stage time per block.

Each measurement of (a) runs in a fresh subprocess so peak RSS is that run's alone.

    python benchmarks/bench_segment.py                 # all, default sizes
    python benchmarks/bench_segment.py --em-crop 256   # (b) on a 256^3 crop (faster)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EM = Path(os.environ.get("NEURORECON_SHARED_DATA", REPO.parent / "shared" / "data")) / "em" / "connectomics.npy.ckl.gz"


def noisy_affinities(labels: np.ndarray, *, seed: int, noise: float = 0.05) -> np.ndarray:
    """Affinities of a label volume, blurred in x/y and with Gaussian noise (a stand-in for a network)."""
    from scipy import ndimage

    from pipeline.targets import affinities_from_labels

    rng = np.random.default_rng(seed)
    aff = affinities_from_labels(labels).affinities
    aff = ndimage.uniform_filter(aff, size=(1, 1, 3, 3))
    aff += rng.normal(0, noise, aff.shape).astype(np.float32)
    return np.clip(aff, 0, 1).astype(np.float32)


# -- (a) scaling ------------------------------------------------------------------------------------


def _phantom_labels(path: Path, shape: tuple[int, int, int], chunks: tuple[int, int, int]) -> np.ndarray:
    """The ground-truth labels of a light-sheet phantom of ``shape`` (4 neurons + 4 AIS per 4 M voxels)."""
    from pipeline.io.omezarr import open_labels
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    n = max(4, int(4 * np.prod(shape) / (64 * 256 * 256)))
    params = PhantomParams(shape=shape, chunks=chunks, seed=5, n_neurons=n, n_ais=n)
    write_phantom(path, params, overwrite=True, progress=False)
    return np.asarray(open_labels(path, "ground_truth").array[...])


def _mirrored(labels: np.ndarray, region: tuple[slice, slice, slice]) -> np.ndarray:
    """``region`` of ``labels`` mirrored about its upper faces (index i >= n reads 2n - 1 - i), any size."""
    index = []
    for sl, n in zip(region, labels.shape, strict=True):
        i = np.arange(sl.start, sl.stop) % (2 * n)
        index.append(np.where(i < n, i, 2 * n - 1 - i))
    return labels[np.ix_(*index)]


def _write_affinities(path: Path, labels: np.ndarray, factor: int, chunks: tuple[int, int, int]) -> None:
    """Noisy affinities (uint8 quantized) of ``labels`` mirrored to ``factor`` times its size per axis.

    Mirroring keeps the tissue's density and object statistics (an 8x volume is the same neurites
    continued across mirror planes); a phantom grown in the larger box would have more foreground, as
    fewer neurites leave it early.
    """
    from pipeline.blocks import block_grid
    from pipeline.io.omezarr import create_image, write_region

    shape = tuple(n * factor for n in labels.shape)
    aff = create_image(path, shape=shape, dtype="uint8", chunks=chunks, voxel_size_um=(1.5, 0.5, 0.5),
                       channels=3, name="affinities", overwrite=True, codec="lz4")  # as predict writes them
    for b in block_grid(shape, block_shape=chunks, halo=(1, 1, 1)):
        a = noisy_affinities(_mirrored(labels, b.read), seed=b.id)[(slice(None), *b.write_in_read)]
        write_region(aff, (slice(None), *b.write), np.round(a * 255).astype(np.uint8))


def peak_rss_mb() -> float:
    """This process's peak resident set size, MB.

    ``VmHWM`` of ``/proc/self/status`` where available: ``getrusage``'s ``ru_maxrss`` keeps the high-water
    mark across ``execve``, so a child started by a big parent reports the parent's RSS at the fork.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_segment(root: str, block: list[int]) -> None:
    """Child process: segment and print timings and peak RSS as JSON."""
    from flows.stages.segment import segment_volume

    t = time.perf_counter()
    segment_volume(Path(root) / "aff.zarr", fragments_out=Path(root) / "fragments.zarr",
                   segmentation_out=Path(root) / "segmentation.zarr", state_dir=Path(root) / "state",
                   block_shape=block, halo_vx=(4, 16, 16), threshold=0.5, background_threshold=0.5,
                   max_threshold=1.0, max_retries=2, progress=False)
    seconds = time.perf_counter() - t
    stages = {}
    for stage in ("blocks", "faces", "relabel"):
        stages[stage] = len(list((Path(root) / "state" / stage).glob("*.json"))) - 1
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(),
                      "blocks": stages["blocks"]}))


def scaling(base: tuple[int, int, int], block: tuple[int, int, int], repeats: int = 3) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        labels = _phantom_labels(Path(tmp) / "phantom.zarr", base, block)
        for factor in (1, 2):
            shape = tuple(s * factor for s in base)
            root = Path(tmp) / f"x{factor ** 3}"
            root.mkdir()
            _write_affinities(root / "aff.zarr", labels, factor, block)
            runs = []
            for _ in range(repeats):  # a fresh output each time; best time (least disturbed), worst RSS
                for name in ("state", "fragments.zarr", "segmentation.zarr"):
                    shutil.rmtree(root / name, ignore_errors=True)
                out = subprocess.run([sys.executable, __file__, "--child", str(root), *map(str, block)],
                                     capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            res = {"seconds": min(r["seconds"] for r in runs), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                   "blocks": runs[0]["blocks"], "shape": shape, "voxels": int(np.prod(shape))}
            rows.append(res)
    return rows


# -- (b) block-wise vs whole-volume waterz, (c) stage times -----------------------------------------------


def em_comparison(crop: int, block: tuple[int, int, int]) -> dict:
    import crackle
    import waterz

    from pipeline.blocks import block_grid, grid_shape
    from pipeline.metrics import variation_of_information
    from pipeline.segment._quiet import quiet_stdout
    from pipeline.segment.agglomerate import union_lut
    from pipeline.segment.blockwise import (
        Lut,
        RegionEdges,
        block_segment,
        check_halo_vx,
        face_edges,
        lower_neighbour,
        relabel_block,
    )

    labels = crackle.load(str(EM))[:crop, :crop, :crop]
    aff = noisy_affinities(labels, seed=0)
    t = time.perf_counter()
    with quiet_stdout():
        whole = np.array(next(iter(waterz.agglomerate(aff, [0.5]))), copy=True)
    t_whole = time.perf_counter() - t

    # The block-wise algorithm, stage by stage (what segment_blockwise runs), timed per stage.
    shape = aff.shape[1:]
    halo = check_halo_vx(tuple(min(h, b) for h, b in zip((4, 16, 16), block, strict=True)), block_shape=block,
                         volume_shape=shape)
    blocks = block_grid(shape, block_shape=block, halo=halo)
    per_block = int(np.prod(block))
    times = {"blocks": 0.0, "faces": 0.0, "union": 0.0, "relabel": 0.0}
    grid = grid_shape(blocks)
    fragments = np.zeros(shape, np.uint64)
    ids, pairs, faces = [], [], {}
    t = time.perf_counter()
    for b in blocks:
        res = block_segment(aff[(slice(None), *b.read)], b, id_offset=b.id * per_block,
                            background_threshold=0.0)
        fragments[b.write] = res.fragments
        ids.append(np.arange(b.id * per_block + 1, b.id * per_block + res.n + 1, dtype=np.uint64))
        pairs.append(res.edges)
        faces[b.id] = (res.lower, res.upper)
    times["blocks"] = time.perf_counter() - t
    t = time.perf_counter()
    for b in blocks:
        for d, lower in enumerate(faces[b.id][0]):
            if lower is not None:
                pairs.append(face_edges(lower, faces[lower_neighbour(b, d, grid)][1][d]))
    times["faces"] = time.perf_counter() - t
    t = time.perf_counter()
    lut = Lut(*union_lut(np.concatenate(ids), [RegionEdges.concat(pairs).at(0.5)]))
    times["union"] = time.perf_counter() - t
    t = time.perf_counter()
    seg = np.zeros(shape, np.uint64)
    for b in blocks:
        seg[b.write] = relabel_block(fragments[b.write], lut)
    times["relabel"] = time.perf_counter() - t
    t_blockwise = sum(times.values())
    voi = variation_of_information(seg.astype(np.int64), whole.astype(np.int64))
    return {"crop": crop, "block": block, "n_blocks": len(blocks), "t_whole": t_whole, "t_blockwise": t_blockwise,
            "ratio": t_blockwise / t_whole, "stage_seconds": times, "voi_vs_whole": voi.total,
            "segments_whole": int(len(np.unique(whole)) - 1), "segments_blockwise": int(len(np.unique(seg)) - 1)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _run_segment(sys.argv[2], [int(v) for v in sys.argv[3:6]])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=int, nargs=3, default=(64, 256, 256), help="(a) base volume shape z y x")
    ap.add_argument("--block", type=int, nargs=3, default=(32, 128, 128), help="block shape z y x")
    ap.add_argument("--em-crop", type=int, default=512, help="(b) cube size of the EM crop")
    ap.add_argument("--em-block", type=int, nargs=3, default=(128, 256, 256), help="(b) block shape on EM")
    ap.add_argument("--skip", choices=["a", "b"], action="append", default=[])
    ap.add_argument("--repeats", type=int, default=3, help="(a) runs per size: best time, worst peak RSS")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"# bench_segment  cpus={os.cpu_count()}  numpy={np.__version__}\n")
    if "a" not in args.skip:
        rows = scaling(tuple(args.base), tuple(args.block), repeats=args.repeats)
        print("## (a) scaling, Zarr path, serial, block", tuple(args.block))
        print("| volume (z, y, x) | voxels | blocks | time (s) | peak RSS (MB) |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['shape']} | {r['voxels']:,} | {r['blocks']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
        print(f"\ntime ratio 8x/1x = {rows[1]['seconds'] / rows[0]['seconds']:.2f} (target <= 8.8); "
              f"peak RSS ratio = {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f} (target <= 1.1)\n")
    if "b" not in args.skip:
        if not EM.is_file():
            print(f"(b) skipped: {EM} not found (set NEURORECON_SHARED_DATA)")
            return
        r = em_comparison(args.em_crop, tuple(args.em_block))
        print(f"## (b) EM {r['crop']}^3 (affinities from the real segmentation + noise), block {r['block']}, "
              f"{r['n_blocks']} blocks")
        print("| one waterz call (s) | block-wise (s) | ratio | VOI vs whole (bits) | segments whole / block-wise |")
        print("|---|---|---|---|---|")
        print(f"| {r['t_whole']:.1f} | {r['t_blockwise']:.1f} | {r['ratio']:.2f} (target <= 1.2) | "
              f"{r['voi_vs_whole']:.4f} | {r['segments_whole']} / {r['segments_blockwise']} |")
        print("\n## (c) per-stage time per block (EM run above)")
        print("| stage | total (s) | per block (s) |")
        print("|---|---|---|")
        for stage, sec in r["stage_seconds"].items():
            print(f"| {stage} | {sec:.2f} | {sec / r['n_blocks']:.3f} |")


if __name__ == "__main__":
    main()
