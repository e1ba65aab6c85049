"""Lazy package exports: a package's public names are imported from their submodule on first use.

Importing one light module of a package (a config section such as :mod:`pipeline.metrics.config`) runs
the package's ``__init__``; with eager re-exports that would import every submodule (SciPy, matplotlib,
kimimaro) and make each command start seconds slower. The packages that re-export heavy modules declare
their exports with :func:`attach` instead (the pattern of scientific Python's SPEC 1 / ``lazy_loader``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose submodule ``m`` exports ``exports[m]``.

    Examples
    --------
    >>> __getattr__, __dir__, __all__ = attach("pipeline.skeleton", {"lengths": ["cable_length_um"]})
    >>> __getattr__("cable_length_um").__name__
    'cable_length_um'
    """
    where = {name: module for module, names in exports.items() for name in names}
    names = sorted(where)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__, list(names)
