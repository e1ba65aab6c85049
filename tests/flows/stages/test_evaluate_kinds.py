"""``neurorecon evaluate`` per kind of volume, on written phantoms: the exact ground truth scores perfect, and
known errors (a neuron cut at a dropout gap, two touching neurons merged, an AIS cut) score by hand-computable
amounts. The kind and the gaps come from the phantom's ground-truth folder; nothing is passed for them."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from scipy.spatial import cKDTree

from flows.stages.evaluate import evaluate_run
from pipeline.io.omezarr import create_label_image, open_image
from pipeline.io.phantom import read_phantom_truth, write_phantom
from pipeline.io.skeletons import read_swc_folder
from pipeline.metrics.config import EvaluateConfig
from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3 as DUST_UM3
from pipeline.synth import PhantomParams

EVAL_BLOCK = EvaluateConfig().block_shape  # the config's default

VS = (1.5, 0.5, 0.5)
# nodes of the phantoms' skeletons a little beyond the image are counted in metrics.json, never warned about
pytestmark = pytest.mark.filterwarnings("error::UserWarning")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Default phantoms of each kind, written on first use (seed 2: touching neurons, gaps inside)."""
    cache = {}

    def get(kind):
        if kind not in cache:
            root = tmp_path_factory.mktemp(kind)
            result = write_phantom(root / "volume.zarr", PhantomParams(kind=kind, seed=2), progress=False)
            gt_path = result.store / "labels" / "ground_truth"
            gt = np.asarray(open_image(gt_path).array[...])
            skeletons = read_swc_folder(result.skeleton_dir)
            cache[kind] = (kind, root, gt_path, gt, skeletons, read_phantom_truth(gt_path))
        return cache[kind]

    return get


@pytest.fixture(params=["neurons", "ais"])
def phantom(request, phantoms):
    return phantoms(request.param)


def _evaluate(root, gt_path, labels, name):
    seg = root / f"{name}.zarr"
    create_label_image(seg, shape=labels.shape, chunks=(32, 128, 128), voxel_size_um=VS, overwrite=True)
    open_image(seg, mode="r+").array[...] = labels
    return json.loads(evaluate_run(seg, gt_path, out=root / name, min_label_nodes=10,
                                   dust_threshold_um3=DUST_UM3,
                                   block_shape=EVAL_BLOCK, max_retries=0).read_text())


def _cut_at_gap(gt, skeletons, gap):
    """``gt`` with the part of the gap's object beyond the gap given a new label (the object's voxels go to
    the side of their nearest skeleton node); also the number of nodes on each side."""
    graph = skeletons[gap.label]
    nodes = list(graph.nodes)
    pos = np.array([graph.nodes[n]["pos_um"] for n in nodes])
    ends = [
        nodes[int(np.argmin(np.linalg.norm(pos - np.asarray(p), axis=1)))] for p in (gap.start_um, gap.end_um)
    ]
    stretch = nx.shortest_path(graph, *ends)
    cut = graph.copy()
    cut.remove_nodes_from(stretch[1:-1])
    cut.remove_edge(*stretch[:2]) if len(stretch) == 2 else None
    sides = [nx.node_connected_component(cut, e) for e in ends]
    assert not sides[0] & sides[1]
    keep = [n for n in nodes if n in sides[0] | sides[1]]
    tree = cKDTree(np.array([graph.nodes[n]["pos_um"] for n in keep]))
    where = np.argwhere(gt == gap.label)
    _, nearest = tree.query(where * np.asarray(VS))
    beyond = np.array([keep[k] in sides[1] for k in nearest])
    out = gt.astype(np.uint64)
    out[tuple(where[beyond].T)] = int(gt.max()) + 1
    return out, (len(sides[0]), len(sides[1]))


def test_the_exact_ground_truth_scores_perfect(phantom):
    kind, root, gt_path, gt, skeletons, truth = phantom
    m = _evaluate(root, gt_path, gt, "oracle")
    assert m["kind"] == kind and truth.gaps, "the phantom has no dropout gap: nothing checked"
    sk, ln = m["skeleton"], m["length"]
    assert sk["normalized_erl"] == 1.0 and sk["merged_pct"] == 0.0 and sk["omit_pct"] == 0.0
    assert sk["splits_per_neuron"] == 0.0 and sk["merges_per_neuron"] == 0.0
    assert sk["gaps_bridged"] == 1.0 and sk["n_gaps"] == sk["n_gaps_bridged"] == len(truth.gaps)
    assert [r["label"] for r in sk["per_neuron"]] == sorted(skeletons)
    assert isinstance(sk["n_nodes_outside_volume"], int) and sk["n_nodes_outside_volume"] >= 0
    assert all(r["matched_cable_um"] == pytest.approx(r["cable_um"]) for r in sk["per_neuron"])
    assert ln["precision"] == ln["recall"] == 1.0 and ln["discontinuities_per_instance"] == 0.0
    if kind == "ais":  # interior AIS lengths: the same distribution
        assert ln["wasserstein_um"] == 0.0 and ln["ssmd"] == 0.0 and ln["n_matched"] == ln["n_true"]


def test_an_object_cut_at_one_gap_misses_exactly_that_gap(phantom):
    kind, root, gt_path, gt, skeletons, truth = phantom
    gap = None
    for candidate in truth.gaps:
        labels, sides = _cut_at_gap(gt, skeletons, candidate)
        if min(sides) >= 10:  # both pieces long enough to count as segments (min_label_nodes)
            gap = candidate
            break
    assert gap is not None, "no gap with 10 skeleton nodes on both sides"
    m = _evaluate(root, gt_path, labels, "cut")
    sk = m["skeleton"]
    n = len(truth.gaps)
    assert sk["n_gaps_bridged"] == n - 1 and sk["gaps_bridged"] == pytest.approx((n - 1) / n)
    edges = {label: g.number_of_edges() for label, g in skeletons.items()}
    # one extra segment along that object, weighted by its share of the skeleton edges
    assert sk["splits_per_neuron"] == pytest.approx(edges[gap.label] / sum(edges.values()))
    row = next(r for r in sk["per_neuron"] if r["label"] == gap.label)
    assert row["splits"] == 1 and row["normalized_erl"] < 1 and sk["merged_pct"] == 0.0
    if kind == "ais":
        assert m["length"]["discontinuities_per_instance"] > 0 and m["length"]["precision"] < 1


def test_two_touching_neurons_given_one_label_are_merged(phantoms):
    kind, root, gt_path, gt, skeletons, _ = phantoms("neurons")  # (the AIS of a stain do not touch)
    pairs = set()
    for axis in range(3):
        a, b = np.moveaxis(gt, axis, 0)[1:], np.moveaxis(gt, axis, 0)[:-1]
        touch = (a != b) & (a != 0) & (b != 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[touch].tolist(), b[touch].tolist(), strict=True)}
    assert pairs, "no two neurons touch in this phantom"
    first, second = min(pairs)
    merged = gt.copy()
    merged[gt == second] = first
    m = _evaluate(root, gt_path, merged, "merged")
    edges = {label: g.number_of_edges() for label, g in skeletons.items()}
    expected = 100 * (edges[first] + edges[second]) / sum(edges.values())
    assert m["skeleton"]["merged_pct"] == pytest.approx(expected)
    rows = {r["label"]: r for r in m["skeleton"]["per_neuron"]}
    assert rows[first]["merges"] == rows[second]["merges"] == 1


def test_label_ids_from_2_63_score_exactly_as_the_ground_truth(phantom):
    """uint64 ids >= 2**63 are labels like any other (issue 18): the exact ground truth with every id moved
    up by 2**63 scores what the ground truth itself scores, and the ids are reported as they are."""
    _, root, gt_path, gt, _, _ = phantom
    shift = np.uint64(2**63)
    big = np.where(gt > 0, gt.astype(np.uint64) + shift, np.uint64(0))
    assert big.dtype == np.uint64 and int(big.max()) > np.iinfo(np.int64).max
    oracle = _evaluate(root, gt_path, gt, "oracle_small_ids")
    shifted = _evaluate(root, gt_path, big, "big_ids")
    assert shifted["voxel"] == oracle["voxel"] and shifted["voxel"]["dice"] == 1.0
    assert shifted["skeleton"] == oracle["skeleton"] and shifted["skeleton"]["normalized_erl"] == 1.0
    ln, expected = shifted["length"], dict(oracle["length"])
    expected["pred_lengths_um"] = {str(int(k) + 2**63): v for k, v in expected["pred_lengths_um"].items()}
    assert ln == expected and ln["precision"] == ln["recall"] == 1.0
    assert ln["discontinuities_per_instance"] == 0.0
