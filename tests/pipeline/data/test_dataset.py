from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data import Augmentation, PatchDataset, PatchSpec, make_loader, prepare_source, sample_batch
from pipeline.io.omezarr import open_image, open_labels, write_image, write_labels
from tests.pipeline.data.volumes import tube_volume

VS = (1.5, 0.5, 0.5)
SPEC = PatchSpec(input_shape=(4, 16, 16), output_shape=(4, 16, 16), target="affinities")


@pytest.fixture(scope="module")
def zarr_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "v.zarr"
    raw, labels = tube_volume((8, 48, 48), n_tubes=4, radius=2.0)
    write_image(path, raw, voxel_size_um=VS, chunks=(4, 16, 16))
    write_labels(path, "ground_truth", labels)
    image, lab = open_image(path), open_labels(path, "ground_truth")
    return prepare_source(image.array, lab.array, voxel_size_um=image.voxel_size_um)


def _collect(source, *, num_workers, start=0, stop=6):
    ds = PatchDataset(
        [source], spec=SPEC, augmentation=Augmentation(), batch_size=2, seed=11, start=start, stop=stop
    )
    return [b for b in make_loader(ds, num_workers=num_workers, prefetch_factor=2)]


def test_same_batches_with_and_without_workers(zarr_source):
    serial = _collect(zarr_source, num_workers=0)
    parallel = _collect(zarr_source, num_workers=2)
    assert len(serial) == len(parallel) == 6
    for a, b in zip(serial, parallel, strict=True):
        assert isinstance(a["raw"], torch.Tensor) and a["raw"].shape == (2, 1, 4, 16, 16)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    # batch b of the stream is sample_batch(batch_index=b), whatever the loader
    direct = sample_batch(
        [zarr_source], spec=SPEC, augmentation=Augmentation(), batch_size=2, seed=11, batch_index=4
    )
    np.testing.assert_array_equal(serial[4]["raw"].numpy(), direct.raw)
    # distinct batches (distinct worker seeds): no two are equal
    assert len({bytes(b["raw"].numpy().tobytes()) for b in serial}) == 6


def test_resumed_stream_continues_where_it_stopped(zarr_source):
    full = _collect(zarr_source, num_workers=0, stop=6)
    tail = _collect(zarr_source, num_workers=0, start=4, stop=6)
    for a, b in zip(full[4:], tail, strict=True):
        assert torch.equal(a["raw"], b["raw"]) and torch.equal(a["target"], b["target"])


def test_loader_argument_checks(zarr_source):
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(PatchDataset([zarr_source], spec=SPEC, augmentation=Augmentation(), batch_size=1, seed=0),
                    num_workers=-1)
    with pytest.raises(ValueError, match="sources is empty"):
        PatchDataset([], spec=SPEC, augmentation=Augmentation(), batch_size=1, seed=0)
