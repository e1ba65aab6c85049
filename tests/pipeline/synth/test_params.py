"""Bad parameters and inputs give one clear error naming the parameter, the value and what is expected."""

from __future__ import annotations

import networkx as nx
import pytest

from pipeline.errors import ConfigError, InputDataError
from pipeline.synth import (
    AISParams,
    DropoutParams,
    NeuronParams,
    PhantomObject,
    PhantomParams,
    build_phantom,
    generate_phantom,
)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (0, 64, 64)}, r"shape\.0\n.*greater than 0"),
        ({"shape": (64, 64)}, r"shape"),
        ({"voxel_size_um": (1.5, 0.0, 0.5)}, r"voxel_size_um\.1\n.*greater than 0"),
        ({"chunks": (1, 1, 1)}, r"chunks \(1, 1, 1\) hold only 1 voxels each; expected at least 512"),
        ({"seed": -1}, r"seed\n.*greater than or equal to 0"),
        ({"ais": {"length_um": (60.0, 20.0)}}, r"ais\n.*length_um must be \(min, max\) with min <= max"),
        ({"n_ais": -2}, r"n_ais"),
        ({"unknown": 1}, r"unknown\n.*Extra inputs are not permitted"),
        ({"kind": "axons"}, r"kind\n.*'neurons' or 'ais'"),
        ({"kind": "ais", "swc_files": ("a.swc",)}, r"swc_files are rendered as neurons .* kind='neurons'"),
        ({"neuron": {"clearance_um": -1.0}}, r"neuron.clearance_um\n.*greater than or equal to 0"),
        ({"ais": {"density_per_mm3": -5.0}}, r"ais.density_per_mm3\n.*greater than or equal to 0"),
    ],
)
def test_bad_phantom_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhantomParams(**kwargs)


def test_bad_section_params():
    with pytest.raises(ValueError, match=r"length_um must be \(min, max\) with min <= max; got \(60.0, 20"):
        AISParams(length_um=(60.0, 20.0))
    with pytest.raises(ValueError, match=r"soma_radius_um must be \(min, max\) with min <= max"):
        NeuronParams(soma_radius_um=(8.0, 5.0))
    with pytest.raises(ValueError, match=r"branch_probability\n.*less than or equal to 1"):
        NeuronParams(branch_probability=1.5)
    with pytest.raises(ValueError, match=r"min <= max"):
        DropoutParams(length_um=(5.0, 2.0))
    with pytest.raises(ValueError, match=r"kinds\.0\n.*'neuron', 'ais' or 'swc'"):
        DropoutParams(kinds=("soma",))
    match = r"fasciculation_probability \+ crossing_probability must be at most 1 .*got 0.7 \+ 0.5 = 1.2"
    with pytest.raises(ValueError, match=match):
        NeuronParams(fasciculation_probability=0.7, crossing_probability=0.5)
    with pytest.raises(ValueError, match=r"fasciculation_length_um must be \(min, max\) with min <= max"):
        NeuronParams(fasciculation_length_um=(40.0, 10.0))
    with pytest.raises(ValueError, match=r"puncta_radius_um must be \(min, max\)"):
        AISParams(puncta_radius_um=(0.7, 0.3))


def test_chunks_larger_than_shape_are_clipped():
    params = PhantomParams(shape=(8, 16, 16))
    assert params.effective_chunks == (8, 16, 16)


def test_too_many_somata_for_the_volume():
    match = r"n_neurons=40: could place only \d+ of 40 somata .* reduce n_neurons"
    with pytest.raises(ConfigError, match=match):
        generate_phantom(PhantomParams(shape=(32, 96, 96), n_neurons=40))


def test_swc_files_need_graphs_and_matching_counts():
    params = PhantomParams(swc_files=("a.swc", "b.swc"))
    with pytest.raises(ValueError, match="swc_graphs was not given; read them with pipeline.io.swc.read_swc"):
        generate_phantom(params)
    with pytest.raises(ValueError, match="swc_graphs has 1 graphs but params.swc_files lists 2 files"):
        generate_phantom(params, swc_graphs=[nx.Graph()])
    with pytest.raises(TypeError, match="params must be a PhantomParams; got dict"):
        generate_phantom({"seed": 1})  # type: ignore[arg-type]


def test_swc_skeleton_without_radius_is_input_data_error():
    g = nx.Graph()
    g.add_node(1, pos_um=(0.0, 0.0, 0.0), radius_um=0.0)
    g.add_node(2, pos_um=(0.0, 0.0, 5.0), radius_um=0.0)
    g.add_edge(1, 2)
    params = PhantomParams(swc_files=("x.swc",))
    match = r"node 1 has radius_um=0.0; expected a positive radius in µm; set synth.swc_radius_um"
    with pytest.raises(InputDataError, match=match):
        generate_phantom(params, swc_graphs=[g])
    ph = generate_phantom(params.model_copy(update={"swc_radius_um": 1.0}), swc_graphs=[g])
    assert ph.n_objects == 1


def test_build_phantom_rejects_bad_objects():
    g = nx.Graph()
    g.add_node(0, pos_um=(1.0, 1.0, 1.0), radius_um=1.0)
    ok = PhantomObject(1, "neuron", g)
    with pytest.raises(ValueError, match=r"objects\[1\] has label 1; labels must be unique integers >= 1"):
        build_phantom([ok, ok], shape=(8, 8, 8), voxel_size_um=(1, 1, 1))
    with pytest.raises(ValueError, match=r"kind 'neurite'; expected one of \('neuron', 'ais', 'swc'\)"):
        build_phantom([PhantomObject(1, "neurite", g)], shape=(8, 8, 8), voxel_size_um=(1, 1, 1))
    bad = nx.Graph()
    bad.add_node(0, radius_um=1.0)
    with pytest.raises(ValueError, match=r"pos_um=None; expected a finite \(z, y, x\) triple"):
        build_phantom([PhantomObject(1, "neuron", bad)], shape=(8, 8, 8), voxel_size_um=(1, 1, 1))
    cyc = nx.cycle_graph(3)
    for n in cyc:
        cyc.nodes[n].update(pos_um=(float(n), 0.0, 0.0), radius_um=1.0)
    with pytest.raises(ValueError, match="has a cycle"):
        build_phantom([PhantomObject(1, "neuron", cyc)], shape=(8, 8, 8), voxel_size_um=(1, 1, 1))
    with pytest.raises(ValueError, match=r"shape must be three positive integers \(z, y, x\) .* \(8, 0, 8\)"):
        build_phantom([ok], shape=(8, 0, 8), voxel_size_um=(1, 1, 1))
    with pytest.raises(ValueError, match=r"voxel_size_um entries must be positive"):
        build_phantom([ok], shape=(8, 8, 8), voxel_size_um=(1, -1, 1))
    with pytest.raises(ValueError, match=r"puncta must be a finite \(m, 5\) array .* got shape \(2, 4\)"):
        build_phantom([ok], shape=(8, 8, 8), voxel_size_um=(1, 1, 1), puncta=[[1, 1, 1, 1]] * 2)
    with pytest.raises(ValueError, match=r"puncta radii \(column 3\) must be positive"):
        build_phantom([ok], shape=(8, 8, 8), voxel_size_um=(1, 1, 1), puncta=[[1, 1, 1, 0, 1]])
    with pytest.raises(ValueError, match=r"kind must be 'neurons' or 'ais'; got 'dense'"):
        build_phantom([ok], shape=(8, 8, 8), voxel_size_um=(1, 1, 1), kind="dense")


def test_missing_and_malformed_swc_files(tmp_path):
    phantom_io = pytest.importorskip("pipeline.io.phantom")
    missing = tmp_path / "nope.swc"
    with pytest.raises(InputDataError, match=r"swc_files\[0\]: SWC file .*nope.swc does not exist"):
        phantom_io.write_phantom(tmp_path / "a.zarr", PhantomParams(swc_files=(missing,)), progress=False)
    bad = tmp_path / "bad.swc"
    bad.write_text("1 2 3\n")
    with pytest.raises(InputDataError, match=r"swc_files\[0\]: .*bad.swc:1: expected 7 fields"):
        phantom_io.write_phantom(tmp_path / "b.zarr", PhantomParams(swc_files=(bad,)), progress=False)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
    with pytest.raises(TypeError, match="params must be a PhantomParams"):
        phantom_io.write_phantom(tmp_path / "c.zarr", {"seed": 1}, progress=False)  # type: ignore[arg-type]
