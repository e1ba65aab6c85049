"""Each setting has one default, in one config model; the commands, drivers and flows read it from there.

The test walks the config models (every section of :class:`pipeline.config.NeuroreconConfig`, nested ones
included) and then
- every ``neurorecon`` command option named after a config key: its default must be None (unset: the
  config decides), never a restated value;
- every public function of the drivers and flows (``flows.*``), Prefect flows included: a parameter named
  after a config key has no default or None;
- every public function of the library (``pipeline.*``): a parameter named after a key of the run's
  sections that keeps a default must hold the model's very default object (the model and the function
  share one constant), and no function restates a TEASAR setting as its own keyword.
It also checks the layering facts of the same issue: one strict base model, no validator touching the
file system, no allocator change when the block runner is imported.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer.main
from pydantic import BaseModel

import flows
import pipeline
from flows.cli import app
from pipeline.config import NeuroreconConfig
from pipeline.settings import StrictModel
from pipeline.skeleton.params import TeasarParams

REPO = Path(__file__).resolve().parents[1]


def _model_of(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def config_keys(model: type[BaseModel] = NeuroreconConfig, prefix: str = "") -> dict[str, tuple[str, object]]:
    """``{dotted key: (leaf name, default)}`` of every leaf setting (required keys have ``...``)."""
    out: dict[str, tuple[str, object]] = {}
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            out.update(config_keys(sub, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = (name, field.default if not field.is_required() else ...)
    return out


KEYS = config_keys()
#: leaf names of the settings that have a default (a required key, such as segment.out, has none to restate)
DEFAULTED = {name for name, default in KEYS.values() if default is not ...}
#: the library package of each stage section, whose functions' keywords mirror that section's keys
OWNER = {"segment": "pipeline.segment", "skeletonize": "pipeline.skeleton", "evaluate": "pipeline.metrics",
         "report": "pipeline.report"}


def _modules(package) -> list:
    names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return [importlib.import_module(n) for n in sorted(names)]


def _public_functions(module) -> list:
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        fn = getattr(obj, "fn", obj)  # a Prefect flow or task: its function
        if inspect.isfunction(fn) and fn.__module__ == module.__name__:
            found.append((f"{module.__name__}.{name}", fn))
    return found


def test_the_walk_finds_the_settings():
    assert KEYS["skeletonize.halo_um"] == ("halo_um", 3.0)
    assert KEYS["skeletonize.teasar.const_um"] == ("const_um", 1.0)
    assert KEYS["segment.halo_vx"] == ("halo_vx", (4, 16, 16))
    assert KEYS["evaluate.gt_labels"] == ("gt_labels", None) and KEYS["report.figures"] == ("figures", False)
    assert KEYS["dask.max_retries"] == ("max_retries", 2) and KEYS["segment.raw"] == ("raw", ...)


def test_command_options_never_restate_a_config_default():
    command = typer.main.get_command(app)
    restated = []
    for name, sub in command.commands.items():
        for param in sub.params:
            if param.name in DEFAULTED and param.default is not None:
                restated.append(
                    f"neurorecon {name} --{param.name.replace('_', '-')} (default {param.default!r})"
                )
    assert not restated, f"options restating a config default (make them None and read the model): {restated}"


def test_drivers_and_flows_take_settings_without_defaults():
    restated = []
    for module in [flows, *_modules(flows)]:
        for qualname, fn in _public_functions(module):
            for p in inspect.signature(fn).parameters.values():
                if p.name in DEFAULTED and p.default not in (inspect.Parameter.empty, None):
                    restated.append(f"{qualname}({p.name}={p.default!r})")
    assert not restated, f"driver parameters restating a config default: {restated}"


def test_library_defaults_are_the_models_own_constants():
    teasar = set(TeasarParams.model_fields)
    problems = []
    for section, package in OWNER.items():
        defaults: dict[str, list[object]] = {}
        for key, (name, default) in KEYS.items():
            if key.startswith(section + ".") and default is not ...:
                defaults.setdefault(name, []).append(default)
        for module in _modules(importlib.import_module(package)):
            for qualname, fn in _public_functions(module):
                for p in inspect.signature(fn).parameters.values():
                    if p.default is inspect.Parameter.empty or p.default is None:
                        continue
                    if section == "skeletonize" and p.name in teasar:
                        problems.append(
                            f"{qualname}({p.name}=...) restates a TEASAR setting: take a TeasarParams"
                        )
                    elif p.name in defaults and not any(p.default is d for d in defaults[p.name]):
                        problems.append(
                            f"{qualname}({p.name}={p.default!r}) is not {section}.{p.name}'s default"
                        )
    assert not problems, problems


def test_one_strict_base_and_validators_that_touch_no_file_system(tmp_path):
    for module in _modules(pipeline):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                if obj is not StrictModel:
                    assert issubclass(obj, StrictModel), (
                        f"{obj.__qualname__} does not derive from StrictModel"
                    )
    # an output outside output.root is a preflight refusal, not a validation error: validating never
    # resolves paths on the file system
    config = NeuroreconConfig.model_validate(
        {"segment": {"raw": str(tmp_path / "absent.zarr"), "out": "/nonexistent/elsewhere"},
         "output": {"root": str(tmp_path)}}
    )
    assert config.segment is not None and not (tmp_path / "absent.zarr").exists()


def test_importing_the_block_runner_changes_no_allocator_setting():
    code = ("import flows.stages.runner as r, flows.stages.segment, flows.reconstruct; "
            "print(r.one_malloc_arena.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "0"


@pytest.mark.parametrize("section", ["skeletonize", "evaluate", "report"])
def test_analysis_stages_have_a_config_section(section):
    assert section in NeuroreconConfig.model_fields
    assert any(k.startswith(section + ".") for k in KEYS)
