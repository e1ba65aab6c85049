"""Neuroglancer precomputed skeletons for many objects: a file per object against sharded files.

Writes ``--objects`` random skeletons (paths of 20 to 200 nodes, labels 1..N) both ways, in this process:
a file per object (:func:`pipeline.io.skeletons.write_precomputed_objects`, the default of
``neurorecon skeletonize``) and sharded (:func:`pipeline.io.skeletons.write_precomputed_shard`, one call per
shard file as the ``write skeleton shards`` tasks make them, ``skeletonize.sharded_precomputed``). Prints the
files, bytes and seconds of each, the ratios to the per-object baseline, and checks that a sample of the
sharded objects reads back with the nodes written.

    python benchmarks/bench_precomputed.py --objects 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=20000, help="number of skeletons")
    parser.add_argument("--work", type=Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()

    import networkx as nx
    import numpy as np

    from pipeline.io.skeletons import (
        precomputed_sharding,
        read_precomputed_skeletons,
        shard_numbers,
        write_precomputed_info,
        write_precomputed_objects,
        write_precomputed_shard,
    )

    rng = np.random.default_rng(0)
    graphs = {}
    for label in range(1, args.objects + 1):
        n = int(rng.integers(20, 201))
        pos = np.cumsum(rng.normal(0, 0.5, (n, 3)), axis=0) + rng.uniform(0, 500, 3)
        g = nx.path_graph(n)
        for i in g:
            g.nodes[i]["pos_um"] = tuple(pos[i])
            g.nodes[i]["radius_um"] = 0.5
        graphs[label] = g
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_precomputed_"))
    per_object, sharded = work / "per_object", work / "sharded"
    for d in (per_object, sharded):
        d.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    write_precomputed_objects(per_object, graphs)
    write_precomputed_info(per_object)
    t_plain = time.perf_counter() - start

    start = time.perf_counter()
    labels = np.arange(1, args.objects + 1, dtype=np.uint64)
    spec = precomputed_sharding(args.objects)
    numbers = shard_numbers(labels, spec)
    for shard in np.unique(numbers).tolist():
        write_precomputed_shard(
            sharded, {int(k): graphs[int(k)] for k in labels[numbers == shard]}, sharding=spec, shard=shard
        )
    write_precomputed_info(sharded, sharding=spec)
    t_sharded = time.perf_counter() - start

    def size(d: Path) -> tuple[int, int]:
        files = [p for p in d.rglob("*") if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    (n_plain, b_plain), (n_sharded, b_sharded) = size(per_object), size(sharded)
    print(f"# bench_precomputed  objects={args.objects}  work={work}")
    print(
        "| layout | files | MB | write (s) | files vs per object | bytes vs per object | time vs per object |"
    )
    print("|---|---|---|---|---|---|---|")
    print(f"| a file per object | {n_plain:,} | {b_plain / 1e6:.1f} | {t_plain:.1f} | 1.00 | 1.00 | 1.00 |")
    print(
        f"| sharded | {n_sharded:,} | {b_sharded / 1e6:.1f} | {t_sharded:.1f} | {n_sharded / n_plain:.4f} | "
        f"{b_sharded / b_plain:.2f} | {t_sharded / t_plain:.2f} |"
    )

    # a sample read back (the reader lists objects from segment properties: write a minimal one)
    import json

    sample = sorted(rng.choice(labels, size=min(50, args.objects), replace=False).tolist())
    props = sharded / "segment_properties"
    props.mkdir(exist_ok=True)
    (props / "info").write_text(
        json.dumps(
            {
                "@type": "neuroglancer_segment_properties",
                "inline": {"ids": [str(k) for k in sample], "properties": []},
            }
        )
    )
    info = json.loads((sharded / "info").read_text())
    (sharded / "info").write_text(json.dumps({**info, "segment_properties": "segment_properties"}))
    back = read_precomputed_skeletons(sharded)
    ok = sorted(back) == sample and all(
        back[k].number_of_nodes() == graphs[k].number_of_nodes() for k in sample
    )
    print(f"read back {len(sample)} sampled objects: {'ok' if ok else 'MISMATCH'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
