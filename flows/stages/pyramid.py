"""The pyramid step: the lower levels of an OME-Zarr image, from its complete level 0, block by block.

Load -> compute -> save per block around :func:`pipeline.io.pyramid.downsample_block` (the levels are
listed in the image's multiscales metadata, created with the image). Level k runs after level k - 1 is
complete; each level's blocks are marked done in ``<state>/pyramid/<name>/<k>/``, so a rerun skips the
finished blocks. Whoever rewrites level 0 must call :func:`reset_pyramid_state` first (the segment stage
does when its union table is recomputed), so that the levels are made again.

Run by the segment stage for ``fragments.zarr`` and ``segmentation.zarr`` after its relabel step.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.stages.runner import run_blocks
from pipeline.blocks import Block
from pipeline.errors import OutputError
from pipeline.io.blockstate import BlockState
from pipeline.io.layout import RunLayout
from pipeline.io.omezarr import image_fingerprint, open_image
from pipeline.io.pyramid import StoredLevel, downsample_block, level_blocks, stored_levels

__all__ = ["PYRAMID_STATE", "pyramid_volume", "reset_pyramid_state"]

#: The folder of the pyramid step's state, under a run's ``state`` folder.
PYRAMID_STATE = "pyramid"
_STATE_FORMAT = 1


def pyramid_volume(
    image: str | Path,
    *,
    name: str,
    state_dir: str | Path,
    block_shape: Sequence[int] | None,
    max_retries: int,
    client: Any = None,
    progress: bool = True,
) -> int:
    """Fill the lower levels of ``image`` from its level 0 (which must be complete); return how many.

    Parameters
    ----------
    image : path
        OME-Zarr (z, y, x) image or label image whose multiscales list the levels (an image without
        lower levels is left as it is).
    name : str
        Names the state folder (``<state_dir>/pyramid/<name>/<level>``) and the progress bars.
    state_dir : path
        The ``state`` folder of a run directory.
    block_shape : sequence of 3 int, optional
        About how much of the level above one block reads, voxels; default one chunk of the level.
    max_retries : int
        Extra attempts per failed block.
    client : distributed.Client, optional
        Dask client; serial if None.

    Raises
    ------
    InputDataError
        If the multiscales metadata is damaged.
    BlockFailure
        If blocks still fail after their retries.
    """
    levels = stored_levels(image)
    run = RunLayout(Path(state_dir).parent)
    identity = run.identify(image, lambda: image_fingerprint(open_image(image)))
    for level in levels:
        blocks = level_blocks(image, level, block_shape=block_shape)
        state = BlockState(state_dir, f"{PYRAMID_STATE}/{name}/{level.level}")
        state.check_params({
            "image": identity, "level": level.level, "factor": list(level.factor), "shape": list(level.shape),
            "method": level.method, "block_shape": [list(b.write_shape) for b in blocks[:1]],
            "state_format": _STATE_FORMAT,
        })
        run_blocks(
            f"pyramid {name} {level.level}", blocks,
            functools.partial(_pyramid_block, image=str(image), level=level),
            state=state, client=client, max_retries=max_retries, progress=progress,
        ).raise_if_failed()
    return len(levels)


def reset_pyramid_state(state_dir: str | Path) -> None:
    """Forget every finished pyramid block under ``state_dir`` (their level 0 is being rewritten).

    Raises
    ------
    OutputError
        If the state cannot be removed.
    """
    path = Path(state_dir) / PYRAMID_STATE
    try:
        shutil.rmtree(path, ignore_errors=False)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot remove the pyramid state {path}: {exc}") from None


def _pyramid_block(block: Block, *, image: str, level: StoredLevel) -> dict[str, Any]:
    downsample_block(image, level, block)
    return {}
