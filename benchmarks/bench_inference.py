"""Forward-pass throughput and memory of the shipped U-Net: a plain fp32 forward against the standard tools.

Each variant runs in a fresh process (so its peak resident memory, ``VmHWM``, is its own), loads the
shipped ``neurons`` model, runs one warm-up forward pass, then ``--repeats`` timed passes on a random tile,
and reports output megavoxels per second (the tile, not its context), the peak memory, and the largest
difference of its affinities from the fp32 baseline's (same input). Every row prints its ratio to the
fp32 baseline measured in the same run.

CPU variants: ``fp32`` (``torch.no_grad``, the baseline), ``inference_mode``, ``channels_last``
(``torch.channels_last_3d`` for the input and the weights), ``bf16`` (``torch.autocast("cpu",
torch.bfloat16)``), ``compile`` (``torch.compile``; its compile time is reported apart), ``threads1``
(one intra-op thread; the default uses every core). CUDA variants (``--device cuda``): ``fp32``, ``tf32``,
``bf16`` and ``fp16`` autocast (AMP), ``channels_last``, ``compile``; the card's name is printed with the
table.

    python benchmarks/bench_inference.py                      # CPU, tile 16 x 128 x 128
    python benchmarks/bench_inference.py --device cuda --tile 32 256 256
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CPU_VARIANTS = ("fp32", "inference_mode", "channels_last", "bf16", "compile", "threads1")
CUDA_VARIANTS = ("fp32", "tf32", "bf16", "fp16", "channels_last", "compile")


def child(variant: str, device: str, tile: tuple[int, ...], repeats: int, out: Path) -> dict:
    """One variant, in this (fresh) process; the affinities go to ``out`` (.npy) for the comparison."""
    import contextlib

    import numpy as np
    import torch

    from pipeline.inference.memory import peak_rss_bytes
    from pipeline.io.checkpoint import load_model
    from pipeline.model import SHIPPED_MODELS

    torch.manual_seed(0)
    if variant == "threads1":
        torch.set_num_threads(1)
    if variant == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model, _ = load_model(SHIPPED_MODELS["neurons"], device=device)
    context = [int(c) for c in model.context]
    in_shape = tuple(int(s) for s in model.valid_input_shape(tuple(t + 2 * c for t, c in zip(tile, context,
                                                                                             strict=True))))
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, *in_shape), dtype=np.float32)).to(device)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    compile_s = 0.0
    if variant == "compile":
        start = time.perf_counter()
        model = torch.compile(model)
    grad = torch.inference_mode() if variant in ("inference_mode", "compile") else torch.no_grad()
    autocast = (torch.autocast(device, dtype=torch.bfloat16) if variant == "bf16"
                else torch.autocast(device, dtype=torch.float16) if variant == "fp16"
                else contextlib.nullcontext())

    def forward() -> np.ndarray:
        with grad, autocast:
            y = torch.sigmoid(model(x).float())
        if device == "cuda":
            torch.cuda.synchronize()
        return y.cpu().numpy()

    y = forward()  # warm-up (and compilation)
    if variant == "compile":
        compile_s = time.perf_counter() - start
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        y = forward()
        times.append(time.perf_counter() - start)
    np.save(out, y[0, :, : tile[0], : tile[1], : tile[2]])
    return {
        "variant": variant, "seconds": min(times), "mvox_per_s": math.prod(tile) / min(times) / 1e6,
        "peak_rss_gb": peak_rss_bytes() / 1e9, "compile_s": compile_s, "input": list(in_shape),
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tile", type=int, nargs=3, default=None, help="output tile (z y x); default "
                    "16 128 128 on CPU, 32 256 256 on CUDA")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    tile = tuple(args.tile or ((32, 256, 256) if args.device == "cuda" else (16, 128, 128)))
    if args.child:
        print(json.dumps(child(args.child, args.device, tile, args.repeats, args.out)))
        return
    import tempfile

    import numpy as np

    variants = args.variants or (CUDA_VARIANTS if args.device == "cuda" else CPU_VARIANTS)
    if variants[0] != "fp32":
        variants = ("fp32", *[v for v in variants if v != "fp32"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            out = Path(tmp) / f"{variant}.npy"
            run = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--device", args.device, "--tile",
                 *map(str, tile), "--repeats", str(args.repeats), "--out", str(out)],
                capture_output=True, text=True, check=False)
            if run.returncode:
                print(f"{variant}: failed: {run.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            row = json.loads(run.stdout.strip().splitlines()[-1])
            base = np.load(Path(tmp) / "fp32.npy")
            row["max_abs_diff"] = float(np.abs(np.load(out) - base).max())
            rows.append(row)
    base = rows[0]
    print(f"device: {base['device_name']}, torch {base['torch']}, {base['threads']} threads; tile "
          f"{tile} (input {tuple(base['input'])}), best of {args.repeats}")
    print("| variant | s / tile | Mvox/s | vs fp32 | peak RSS (GB) | GPU peak (GB) | max abs Δ affinity "
          "| compile (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        gpu = f"{r['gpu_peak_gb']:.2f}" if r["gpu_peak_gb"] is not None else "–"
        print(f"| {r['variant']} | {r['seconds']:.2f} | {r['mvox_per_s']:.3f} | "
              f"{r['mvox_per_s'] / base['mvox_per_s']:.2f}x | {r['peak_rss_gb']:.2f} | {gpu} | "
              f"{r['max_abs_diff']:.2g} | {r['compile_s']:.0f} |")


if __name__ == "__main__":
    main()
