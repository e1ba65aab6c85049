"""waterz's merge history, recorded once up to the largest threshold, replayed at any threshold: exactly
what waterz gives when run at that threshold."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.segment.agglomerate import MergeHistory, join_levels, merge_levels, replay
from pipeline.segment.fragments import waterz_merge_history, waterz_segment
from tests.pipeline.segment.test_segment import noisy_affinities, same_partition, tube_labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_replayed_history_equals_waterz_run_at_each_threshold(seed):
    labels = tube_labels((10, 20, 20), 5, seed=seed)
    aff = noisy_affinities(labels, seed=seed + 50, noise=0.2)
    if seed % 2:  # uint8-quantized, as stored: many scores tie
        aff = (np.round(aff * 255) / np.float32(255)).astype(np.float32)
    fragments, history = waterz_merge_history(aff, background_threshold=0.0)
    assert len(history) > 50
    levels = merge_levels(history)
    # thresholds equal to recorded scores, just above them in float64 (equal in float32, as waterz compares),
    # and round ones
    scores = np.unique(history.scores)[:: max(1, history.scores.size // 12)].astype(float)
    thresholds = [*scores, *(scores + 1e-9), 0.0, 0.3, 0.5, 0.7, 1.0]
    for t in thresholds:
        ref_fragments, expected = waterz_segment(aff, threshold=t, background_threshold=0.0)
        np.testing.assert_array_equal(ref_fragments, fragments)  # the watershed ignores the threshold
        ours = replay(history, t, n_fragments=int(fragments.max()))[fragments]
        assert same_partition(ours, expected), (seed, t)
        # the merges made at t are the prefix of the history with level < t
        assert len(np.unique(expected)) == len(np.unique(fragments)) - int((levels < np.float32(t)).sum())


def _slow_join_levels(history, u, v):
    """Replay the history merge by merge with a dict union-find; the level at which u and v first meet."""
    parent: dict[int, int] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    out = []
    for a0, b0 in zip(u.tolist(), v.tolist(), strict=True):
        parent.clear()
        level = -np.inf if a0 == b0 else np.inf
        for (a, b), lv in zip(history.merges.tolist(), merge_levels(history).tolist(), strict=True):
            if a0 == b0:
                break
            parent[find(b)] = find(a)
            if find(a0) == find(b0):
                level = lv
                break
        out.append(level)
    return np.array(out, np.float32)


def test_join_levels_against_a_slow_replay():
    rng = np.random.default_rng(7)
    n = 60
    # a random merge order over 1..n: each merge joins two current regions (waterz names the union a)
    alive = list(range(1, n + 1))
    merges, scores = [], []
    for _ in range(45):
        a, b = rng.choice(alive, 2, replace=False)
        alive.remove(b)
        merges.append((a, b))
        scores.append(rng.uniform(0, 1))
    history = MergeHistory(np.array(merges), np.array(scores))
    u = rng.integers(0, n + 1, 400)
    v = rng.integers(0, n + 1, 400)
    u[:20] = v[:20]
    got = join_levels(history, u, v, n_fragments=n)
    np.testing.assert_array_equal(got, _slow_join_levels(history, u, v))
    assert np.isneginf(got[:20]).all() and np.isinf(got).any() and np.isfinite(got).any()


def test_an_empty_history():
    history = MergeHistory(np.zeros((0, 2), np.uint64), [])
    levels = join_levels(history, np.array([1, 2]), np.array([2, 2]), n_fragments=2)
    assert levels.tolist() == [np.inf, -np.inf]
    assert replay(history, 0.5, n_fragments=2).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="2 merges but 1 scores"):
        MergeHistory(np.array([[1, 2], [1, 3]]), [0.1])
