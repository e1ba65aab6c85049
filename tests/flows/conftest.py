"""One ephemeral Prefect API for the whole session (it takes ~15-20 s to start)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/bench_fault_injection.py`` as a module: the kill and signal tests use its functions."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fault_injection.py"
    spec = importlib.util.spec_from_file_location("bench_fault_injection", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
