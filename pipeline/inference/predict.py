"""Affinity prediction over a region of a volume, in tiles, with the network's context.

How a region is covered: the output region is cut into tiles whose *global* offsets are multiples of
``stride``, a multiple of the network's total downsample factor (a U-Net is shift-equivariant only for
such shifts). Each tile's input is the tile grown by the network's ``context`` on every side. So the
prediction at a voxel does not depend on which block or tile computed it, and block-wise inference
equals whole-volume inference exactly — for networks whose normalization does not use per-input
statistics (``norm=None``, or BatchNorm in eval mode; GroupNorm normalizes over each tile, so tiles of
other sizes give slightly different outputs).

Outside the volume the raw data are mirrored (``numpy.pad(mode="reflect")``), the same for every block.

Optional x/y down-scaling (the AIS paper found 3× improves continuity on light-sheet data): the raw
region is averaged over ``k × k`` x/y boxes before prediction and the affinities are repeated back to
full resolution (an affinity at a coarse voxel applies to all fine voxels it covers). Regions must then
start at multiples of ``k`` along y and x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import torch

__all__ = ["FORWARD_VERSION", "for_inference", "plan_tiles", "predict_region", "read_with_context"]

Region = tuple[slice, slice, slice]


def plan_tiles(region: Region, *, tile_shape: Sequence[int], stride_multiple: Sequence[int]) -> list[Region]:
    """Tiles of stride ``s`` covering ``region``, at global offsets that are multiples of ``s``.

    ``s`` is the largest multiple of ``stride_multiple`` not above ``tile_shape`` (per axis). The first
    and last tiles may stick out of the region; their outputs are cropped.
    """
    tiles_per_axis = []
    for sl, t, m in zip(region, tile_shape, stride_multiple, strict=True):
        s = (t // m) * m
        if s < 1:
            raise ValueError(f"tile_shape {tuple(tile_shape)} is smaller than the stride multiple {tuple(stride_multiple)}")
        first = (sl.start // s) * s
        tiles_per_axis.append([slice(o, o + s) for o in range(first, sl.stop, s)])
    return [(z, y, x) for z in tiles_per_axis[0] for y in tiles_per_axis[1] for x in tiles_per_axis[2]]


def read_with_context(
    read: Callable[[Region], np.ndarray], shape: Sequence[int], region: Region, context: Sequence[int]
) -> np.ndarray:
    """Read ``region`` grown by ``context`` per side, mirroring the volume where it sticks out.

    Parameters
    ----------
    read : callable
        ``read(region) -> array`` for in-volume regions (e.g. a zarr array's ``__getitem__``).
    shape : sequence of int
        Volume shape (z, y, x).
    """
    lo = [sl.start - c for sl, c in zip(region, context, strict=True)]
    hi = [sl.stop + c for sl, c in zip(region, context, strict=True)]
    inside = tuple(slice(max(a, 0), min(b, s)) for a, b, s in zip(lo, hi, shape, strict=True))
    data = np.asarray(read(inside))
    pad = [(max(-a, 0), max(b - s, 0)) for a, b, s in zip(lo, hi, shape, strict=True)]
    for axis, (before, after) in enumerate(pad):
        if before or after:
            # numpy reflects repeatedly when the pad is wider than the data; a single plane is repeated.
            widths = [(0, 0)] * data.ndim
            widths[axis] = (before, after)
            data = np.pad(data, widths, mode="reflect" if data.shape[axis] > 1 else "edge")
    return data


#: Bumped when the forward pass changes in a way that changes its memory (the measurement cache's key).
FORWARD_VERSION = "channels_last-1"


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with its weights channels-last (``channels_last_3d`` for a 3-D network):
    the layout oneDNN's convolutions run fastest in on CPUs (1.48x the fp32 default for the shipped
    U-Net on 2 cores, same affinities to 4e-7: ``benchmarks/bench_inference.py``), and cuDNN's on recent
    GPUs. Converts the model in place and returns it."""
    model.eval()
    weights = [p for p in model.parameters() if p.dim() in (4, 5)]
    if weights:
        fmt = torch.channels_last_3d if weights[0].dim() == 5 else torch.channels_last
        model.to(memory_format=fmt)
    return model


def _memory_format(model: torch.nn.Module) -> torch.memory_format | None:
    """The channels-last format the model's convolution weights are in (:func:`for_inference`), if any."""
    for p in model.parameters():
        if p.dim() == 5 and p.is_contiguous(memory_format=torch.channels_last_3d) and not p.is_contiguous():
            return torch.channels_last_3d
        if p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
            return torch.channels_last
        if p.dim() in (4, 5):
            return None
    return None


def predict_region(
    model: torch.nn.Module,
    read: Callable[[Region], np.ndarray],
    *,
    volume_shape: Sequence[int],
    region: Region,
    tile_shape: Sequence[int],
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    amp: bool | None = None,
    downscale_xy: int = 1,
) -> np.ndarray:
    """Predict affinities (sigmoid of the network's output) over ``region`` of a volume.

    Parameters
    ----------
    model : UNet
        A network with ``context``, ``total_downsample_factor``, ``padding`` and ``output_shape``
        (see :class:`pipeline.model.UNet`), in eval mode.
    read : callable
        ``read(region) -> float32 array`` of *normalized* raw data for in-volume (z, y, x) regions.
    volume_shape : sequence of 3 int
        Shape of the whole volume.
    region : tuple of 3 slice
        The output region (e.g. a block's write region).
    tile_shape : sequence of 3 int
        Output size of one tile before rounding down to the downsample factor (at the network's
        resolution, i.e. after x/y down-scaling).
    batch_size : int
        Tiles per forward pass.
    device : str or torch.device
        ``"cpu"`` or ``"cuda"``.
    amp : bool, optional
        Mixed precision (bfloat16 autocast); default: on for CUDA, off for CPU.
    downscale_xy : int
        Predict at ``1/k`` resolution in y and x, then repeat back.

    Returns
    -------
    numpy.ndarray
        (C, *region shape) float32 in [0, 1], C = the network's output channels.
    """
    k = int(downscale_xy)
    if k < 1:
        raise ValueError(f"downscale_xy must be a positive integer; got {downscale_xy}")
    if k > 1 and any(sl.start % k for sl in region[1:]):
        raise ValueError(f"with downscale_xy={k} the region must start at multiples of {k} in y and x; got {region}")
    device = torch.device(device)
    if amp is None:
        amp = device.type == "cuda"
    context = tuple(int(c) for c in model.context)
    factor = tuple(int(f) for f in model.total_downsample_factor)
    same = model.padding == "same"

    if k > 1:
        coarse_shape = (volume_shape[0], -(-volume_shape[1] // k), -(-volume_shape[2] // k))
        coarse_region = (region[0], slice(region[1].start // k, -(-region[1].stop // k)),
                         slice(region[2].start // k, -(-region[2].stop // k)))

        def coarse_read(r: Region) -> np.ndarray:
            fine = (r[0], slice(r[1].start * k, min(r[1].stop * k, volume_shape[1])),
                    slice(r[2].start * k, min(r[2].stop * k, volume_shape[2])))
            return _downscale(np.asarray(read(fine), np.float32), k, (r[1].stop - r[1].start, r[2].stop - r[2].start))

        coarse = predict_region(model, coarse_read, volume_shape=coarse_shape, region=coarse_region,
                                tile_shape=tile_shape, batch_size=batch_size, device=device, amp=amp)
        fine = np.repeat(np.repeat(coarse, k, axis=2), k, axis=3)
        y0, x0 = region[1].start - coarse_region[1].start * k, region[2].start - coarse_region[2].start * k
        return fine[:, :, y0 : y0 + region[1].stop - region[1].start, x0 : x0 + region[2].stop - region[2].start]

    tiles = plan_tiles(region, tile_shape=tile_shape, stride_multiple=factor)
    stride = tuple(sl.stop - sl.start for sl in tiles[0])
    # Input size: the smallest the network accepts that yields at least `stride` outputs. Every tile's
    # input starts at g - context for a tile at global offset g (spare output at the far end), so the
    # input's phase against the pooling grid, hence the result, is the same for any tile size.
    in_shape = tuple(model.valid_input_shape(tuple(s + 2 * c for s, c in zip(stride, context, strict=True))))
    out_shape = in_shape if same else tuple(model.output_shape(in_shape))
    spare = [o - s if not same else i - s - 2 * c
             for o, i, s, c in zip(out_shape, in_shape, stride, context, strict=True)]
    lead = [0, 0, 0]  # extra output voxels before the window
    crop_at = [c + e if same else e for c, e in zip(context, lead, strict=True)]  # window start in the output
    margin = [c + e for c, e in zip(context, spare, strict=True)]
    span = tuple(slice(min(t[a].start for t in tiles), max(t[a].stop for t in tiles)) for a in range(3))
    big = read_with_context(read, volume_shape, span, margin).astype(np.float32, copy=False)
    origin = [sl.start - m for sl, m in zip(span, margin, strict=True)]
    result = None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    fmt = _memory_format(model)
    with torch.inference_mode(), autocast:
        for first in range(0, len(tiles), batch_size):
            batch = tiles[first : first + batch_size]
            inputs = np.stack([
                big[tuple(slice(t[a].start - context[a] - lead[a] - origin[a],
                                t[a].start - context[a] - lead[a] - origin[a] + in_shape[a]) for a in range(3))]
                for t in batch
            ])
            x = torch.from_numpy(inputs[:, None]).to(device)
            x = x.contiguous(memory_format=fmt) if fmt is not None else x
            y = torch.sigmoid(model(x).float()).contiguous().cpu().numpy()
            y = y[(slice(None), slice(None), *(slice(o, o + n) for o, n in zip(crop_at, stride, strict=True)))]
            if result is None:
                result = np.zeros((y.shape[1], *(sl.stop - sl.start for sl in region)), np.float32)
            for t, pred in zip(batch, y, strict=True):
                dst, src = [], []
                for a in range(3):
                    lo, hi = max(t[a].start, region[a].start), min(t[a].stop, region[a].stop)
                    dst.append(slice(lo - region[a].start, hi - region[a].start))
                    src.append(slice(lo - t[a].start, hi - t[a].start))
                result[(slice(None), *dst)] = pred[(slice(None), *src)]
    if result is None:
        raise ValueError(f"region {region} is empty")
    return result


def _downscale(fine: np.ndarray, k: int, coarse_yx: tuple[int, int]) -> np.ndarray:
    """Average k×k x/y boxes; boxes sticking out of ``fine`` average what they cover."""
    z, y, x = fine.shape
    cy, cx = coarse_yx
    padded = np.pad(fine, ((0, 0), (0, cy * k - y), (0, cx * k - x)), mode="edge") if (cy * k, cx * k) != (y, x) else fine
    return padded.reshape(z, cy, k, cx, k).mean(axis=(2, 4), dtype=np.float32)
