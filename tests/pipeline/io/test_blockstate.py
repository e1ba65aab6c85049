"""Per-block completion state: markers written last and atomically, parameters checked, leftovers of a
killed run removed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pipeline.errors import OutputError
from pipeline.io.blockstate import BlockState, record_arrays, record_from_arrays


@dataclass(frozen=True)
class Face:
    index: np.ndarray
    fragments: np.ndarray


@dataclass(frozen=True)
class Decisions:
    block_id: int
    weight: float
    exact: bool
    merges: np.ndarray
    faces: tuple[Face | None, Face | None]
    extra: Face | None


def test_markers_and_payloads_round_trip(tmp_path):
    state = BlockState(tmp_path, "blocks")
    state.check_params({"threshold": 0.5})
    assert state.done_ids() == set()
    state.save_records(3, merges=np.array([[1, 2]], np.uint64))
    assert not state.is_done(3)  # a payload alone does not make a block done
    state.mark_done(3, {"n_fragments": np.int64(7)})
    assert state.done_ids() == {3} and state.info(3) == {"n_fragments": 7}
    np.testing.assert_array_equal(state.load_record(3, np.ndarray, "merges"), [[1, 2]])
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


def test_records_round_trip_with_nested_optional_records(tmp_path):
    face = Face(np.array([0, 5], np.uint32), np.array([7, 9], np.uint64))
    record = Decisions(block_id=4, weight=0.25, exact=True, merges=np.zeros((0, 2), np.uint64),
                       faces=(None, face), extra=None)
    assert sorted(record_arrays(record, prefix="d")) == [
        "d.block_id", "d.exact", "d.faces.1.fragments", "d.faces.1.index", "d.merges", "d.weight",
    ]
    state = BlockState(tmp_path, "blocks")
    state.save_records(4, decisions=record, other=np.arange(3))
    again = state.load_record(4, Decisions, "decisions")
    assert (again.block_id, again.weight, again.exact, again.faces[0], again.extra) == (
        4, 0.25, True, None, None
    )
    assert again.merges.dtype == np.uint64 and again.merges.shape == (0, 2)
    assert again.faces[1].index.dtype == np.uint32 and again.faces[1].fragments.tolist() == [7, 9]
    # one nested record alone, by its path; an absent optional one is None
    assert state.load_record(4, Face, "decisions.faces.1").index.tolist() == [0, 5]
    assert state.load_record(4, Face, "decisions.faces.0", optional=True) is None
    assert state.load_record(4, np.ndarray, "other").tolist() == [0, 1, 2]
    # stage-wide records have a name, never a number
    state.save_records("plan", plan=face)
    assert record_from_arrays(Face, record_arrays(face, prefix="p"), prefix="p").fragments.tolist() == [7, 9]
    with pytest.raises(ValueError, match="non-numeric name"):
        state.save_records("12", plan=face)


def test_missing_or_damaged_records_name_the_file(tmp_path):
    state = BlockState(tmp_path, "blocks")
    state.save_records(1, merges=np.zeros(2))
    with pytest.raises(OutputError, match=r"blocks/1\.npz is missing or damaged"):
        state.load_record(1, Face, "faces")
    (state.dir / "2.npz").write_bytes(b"not a zip")
    with pytest.raises(OutputError, match=r"blocks/2\.npz is missing or damaged"):
        state.load_record(2, np.ndarray, "merges")
    (state.dir / "3.npz").write_bytes(b"")  # emptied (a payload renamed but never flushed, then a crash)
    with pytest.raises(OutputError, match=r"blocks/3\.npz is missing or damaged \(EOFError.*delete .*blocks/3\.json"):
        state.load_record(3, np.ndarray, "merges")
    with pytest.raises(OutputError, match=r"blocks/plan\.npz is missing .* delete it and rerun"):
        state.load_record("plan", np.ndarray, "plan")
