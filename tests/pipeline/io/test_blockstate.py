"""Per-block completion state: markers written last and atomically, parameters checked, leftovers of a
killed run removed."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import OutputError
from pipeline.io.blockstate import BlockState


def test_markers_and_payloads_round_trip(tmp_path):
    state = BlockState(tmp_path, "blocks")
    state.check_params({"threshold": 0.5})
    assert state.done_ids() == set()
    state.save_arrays(3, merges=np.array([[1, 2]], np.uint64))
    assert not state.is_done(3)  # a payload alone does not make a block done
    state.mark_done(3, {"n_fragments": np.int64(7)})
    assert state.done_ids() == {3} and state.info(3) == {"n_fragments": 7}
    np.testing.assert_array_equal(state.load_arrays(3)["merges"], [[1, 2]])
    state.forget(3)
    assert state.done_ids() == set() and not (tmp_path / "blocks" / "3.npz").exists()


def test_other_parameters_are_refused_and_reset_starts_over(tmp_path):
    BlockState(tmp_path, "blocks").check_params({"threshold": 0.5})
    BlockState(tmp_path, "blocks").mark_done(0)
    with pytest.raises(OutputError, match="other parameters .*threshold"):
        BlockState(tmp_path, "blocks").check_params({"threshold": 0.4})
    BlockState(tmp_path, "blocks").check_params({"threshold": 0.4}, reset=True)
    assert BlockState(tmp_path, "blocks").done_ids() == set()


def test_temporary_files_of_a_killed_run_are_removed_and_never_count(tmp_path):
    state = BlockState(tmp_path, "blocks")
    state.check_params({"threshold": 0.5})
    state.mark_done(1)
    # What a kill between writing and renaming leaves behind:
    (state.dir / ".2.json.4242.tmp").write_text("{")
    (state.dir / ".2.4242.tmp.npz").write_bytes(b"partial")
    assert state.done_ids() == {1}  # never trusted
    BlockState(tmp_path, "blocks").check_params({"threshold": 0.5})  # the rerun's start
    assert sorted(p.name for p in state.dir.iterdir()) == ["1.json", "stage.json"]
