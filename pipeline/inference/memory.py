"""How much memory one inference task needs: measured per voxel for the model in use.

A predict task holds the Python process with torch and the model (its *runtime*), the block it reads
(with the network's context) and writes, and the activations of one forward pass, which grow with the
tile's *input* voxels (the tile plus the network's context on every side). The last is the large
term — about 0.5 kB per input voxel for the shipped U-Net on CPU: a 32 x 256 x 256 tile reads a
64 x 344 x 344 input, and one predict task peaked at 3.96 GB (measured, 2 cores, torch 2.13) — and it
depends on the architecture, so it is *measured* for each checkpoint: :func:`measure_forward_memory`
runs forward passes of two sizes in fresh processes and takes the growth of the peak resident memory
between them.
:func:`predict_task_bytes` adds the parts up; :func:`tile_for_budget` picks the largest tile that fits.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["MEASURE_SHAPES", "ForwardMemory", "measure_forward_memory", "peak_rss_bytes",
           "predict_task_bytes", "tile_for_budget"]

#: Forward-pass input sizes (z, y, x) of the measurement, before rounding to a size the network takes.
MEASURE_SHAPES = ((16, 128, 128), (16, 192, 192))


@dataclass(frozen=True)
class ForwardMemory:
    """One model's memory on one device kind, as measured by :func:`measure_forward_memory`.

    Attributes
    ----------
    runtime_bytes : int
        Peak resident memory of a process with torch and the model loaded, after a small forward
        pass (imports, weights, allocator pools).
    bytes_per_voxel : float
        Growth of the forward pass's peak per input voxel (batch of one tile).
    device : str
        ``"cpu"``; on CUDA the same figure bounds the device memory from above (bfloat16 autocast
        stores activations at half the size).
    torch : str
        The torch version it was measured with.
    """

    runtime_bytes: int
    bytes_per_voxel: float
    device: str
    torch: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ForwardMemory:
        return cls(**json.loads(text))


def measure_forward_memory(checkpoint: str, *, timeout_s: float = 300) -> ForwardMemory:
    """Measure ``checkpoint``'s forward-pass memory on CPU, in fresh Python processes (a few seconds).

    One child per size in :data:`MEASURE_SHAPES`: it loads the model, runs a small forward pass (its
    peak resident memory, ``VmHWM``, is then the runtime), then one forward pass of that size. The
    slope of the peaks between the two sizes is the memory per input voxel. Fresh processes keep the
    figure free of what another pass left in the allocator (measured in one process, the slope varied
    from 480 to 700 B per voxel between runs; in fresh ones by about 10 %).

    Raises
    ------
    RuntimeError
        If a child fails (its last lines of stderr are in the message).
    """
    import torch

    runs = []
    for shape in MEASURE_SHAPES:
        out = subprocess.run(
            [sys.executable, "-m", "pipeline.inference.memory", str(checkpoint), ",".join(map(str, shape))],
            capture_output=True, text=True, timeout=timeout_s, check=False)
        if out.returncode != 0:
            tail = "\n".join(out.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"measuring the memory of {checkpoint} failed:\n{tail}")
        runs.append([int(v) for v in out.stdout.split()[-3:]])
    (v1, runtime, p1), (v2, _, p2) = runs
    return ForwardMemory(runtime_bytes=runtime, bytes_per_voxel=max(p2 - p1, 0) / max(v2 - v1, 1),
                         device="cpu", torch=torch.__version__)


def predict_task_bytes(
    memory: ForwardMemory, *, tile_input_voxels: int, batch_size: int, block_read_voxels: int,
    block_voxels: int, channels: int = 3,
) -> int:
    """Peak memory of one predict task (one block), in bytes.

    Parameters
    ----------
    memory : ForwardMemory
        The model's measured figures.
    tile_input_voxels : int
        Input voxels of one tile (the tile plus the network's context, rounded to what it takes).
    batch_size : int
        Tiles per forward pass.
    block_read_voxels, block_voxels : int
        Voxels the block reads (with context) and writes.
    channels : int
        Affinity channels.

    Returns
    -------
    int
        runtime + forward activations + the block's float32 input, its float32 result and the
        encoded (uint8) copy written.
    """
    forward = memory.bytes_per_voxel * tile_input_voxels * batch_size
    buffers = 4 * block_read_voxels + (4 + 1) * channels * block_voxels
    return int(memory.runtime_bytes + forward + buffers)


def tile_for_budget(
    tile: Sequence[int], *, fits: Callable[[tuple[int, ...]], bool], multiple: Sequence[int],
) -> tuple[int, ...] | None:
    """The largest tile, from ``tile`` down, for which ``fits(tile)`` holds: the longest axis (relative
    to its multiple) is halved, rounded up to ``multiple``, until it fits. None if even the smallest
    tile (``multiple``) does not.

    Examples
    --------
    >>> tile_for_budget((32, 256, 256), fits=lambda t: t[0] * t[1] * t[2] <= 32 * 128 * 128,
    ...                 multiple=(1, 8, 8))
    (32, 128, 128)
    """
    current = tuple(int(t) for t in tile)
    while not fits(current):
        steps = [c // m for c, m in zip(current, multiple, strict=True)]
        axis = max(range(len(current)), key=lambda a: (steps[a], a))
        if steps[axis] <= 1:
            return None
        current = tuple(
            math.ceil(c / 2 / m) * m if a == axis else c
            for a, (c, m) in enumerate(zip(current, multiple, strict=True)))
    return current


def peak_rss_bytes() -> int:
    """This process's peak resident memory, bytes: ``VmHWM`` (Linux), else ``ru_maxrss``. A child's
    ``ru_maxrss`` starts at its parent's high-water mark on Linux (kept across fork and exec), which
    would hide the child's own peak below the parent's; ``VmHWM`` is the child's own."""
    import resource

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _measure(checkpoint: str, shape: Sequence[int]) -> tuple[int, int, int]:
    """A child of :func:`measure_forward_memory`: (input voxels, runtime peak, peak after the pass)."""
    import torch

    from pipeline.io.checkpoint import load_model

    peak = peak_rss_bytes

    from pipeline.inference.predict import _memory_format, for_inference

    model, _ = load_model(checkpoint, device="cpu")
    model = for_inference(model)  # as the predict tasks run it
    fmt = _memory_format(model)

    def forward(size: Sequence[int]) -> int:
        size = tuple(int(s) for s in model.valid_input_shape(tuple(size)))
        x = torch.zeros((1, 1, *size))
        with torch.inference_mode():
            model(x.contiguous(memory_format=fmt) if fmt is not None else x)
        return math.prod(size)

    forward((8, 64, 64))
    runtime = peak()
    voxels = forward(shape)
    return voxels, runtime, peak()


if __name__ == "__main__":
    print(*_measure(sys.argv[1], tuple(int(v) for v in sys.argv[2].split(","))))
