"""Read a YAML config into :class:`pipeline.config.NeuroreconConfig`, with environment overrides.

Overrides use ``NEURORECON__<SECTION>__<KEY>=<value>`` (double underscores separate levels, names are
case-insensitive); the value is parsed as YAML, so ``NEURORECON__SYNTH__SHAPE='[32, 64, 64]'`` and
``NEURORECON__DASK__ADDRESS=tcp://scheduler:8786`` both work. Overrides are applied after the file and
validated with it, so a misspelt override key is rejected like a misspelt file key.

Every failure is a :class:`pipeline.errors.ConfigError` with one message naming the file, the key path,
what was received and what is expected.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config import NeuroreconConfig
from pipeline.errors import ConfigError

__all__ = ["ENV_PREFIX", "config_from_dict", "load_config"]

ENV_PREFIX = "NEURORECON__"


C = typing.TypeVar("C", bound=NeuroreconConfig)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    model: type[C] = NeuroreconConfig,  # type: ignore[assignment]
) -> C:
    """Load and validate a configuration.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file. Without one, the defaults (plus environment overrides) are used.
    env : mapping, optional
        Environment to read ``NEURORECON__...`` overrides from; defaults to ``os.environ``.
    model : type
        :class:`~pipeline.config.NeuroreconConfig`, or :class:`~pipeline.config.BatchConfig` for the
        batch flow (a ``segment:`` section without ``raw`` and ``out``).

    Returns
    -------
    NeuroreconConfig
        The frozen, validated configuration.

    Raises
    ------
    ConfigError
        If the file is missing, is not valid YAML, is not a mapping, or fails validation.

    Examples
    --------
    >>> cfg = load_config(env={"NEURORECON__SYNTH__SEED": "7"})
    >>> cfg.synth.seed
    7
    """
    source = "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(
                f"config file {p} does not exist (or is not a file); pass the path of a YAML file"
            )
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {p} has {p.stat().st_size} bytes, more than a configuration needs "
                f"({MAX_CONFIG_BYTES}); pass the YAML config, not a data file"
            )
        try:
            loaded = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - safe
        except _DuplicateKey as exc:
            raise ConfigError(f"config file {p}: {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"config file {p} is not valid YAML{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} cannot be read: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {p} must hold a mapping of sections (synth:, dask:, ...); "
                f"got a {type(loaded).__name__}"
            )
        data = loaded
    overrides = _env_overrides(os.environ if env is None else env)
    for keys, value in overrides:
        _set_nested(data, keys, value, source)
    if overrides:
        source += " + NEURORECON__ environment overrides"
    _check_expanded_size(data, source)
    return config_from_dict(data, source=source, model=model)


#: Largest config file read, bytes; larger files are refused before parsing.
MAX_CONFIG_BYTES = 1 << 20
#: Largest number of values a config may hold once YAML aliases are expanded (an alias bomb expands a
#: few hundred bytes into billions of values).
MAX_CONFIG_VALUES = 100_000
#: Longest excerpt of a received value an error message echoes, characters.
MAX_ECHO_CHARS = 200


class _DuplicateKey(yaml.YAMLError):
    """A mapping of a config file names a key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that a mapping already holds (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(
                    f"the key '{key}' appears twice in one mapping (lines {seen[key]} and {line}); "
                    "keep one (YAML would silently use the last)"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(data: Any, source: str) -> None:
    """Refuse a config that holds more than :data:`MAX_CONFIG_VALUES` values once aliases are expanded."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"config {source} holds more than {MAX_CONFIG_VALUES} values once its YAML aliases "
                "(*name) are expanded; a configuration needs a few hundred: remove the aliases"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _excerpt(value: Any) -> str:
    """``repr(value)``, cut to :data:`MAX_ECHO_CHARS` characters."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[: MAX_ECHO_CHARS - 5] + " ...)"


def config_from_dict(
    data: Mapping[str, Any], *, source: str = "config", model: type[C] = NeuroreconConfig  # type: ignore[assignment]
) -> C:
    """Validate a plain mapping as a configuration (of ``model``); errors name ``source`` and the key path."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def _env_overrides(env: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    out = []
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(
                f"environment variable {name} is malformed; expected {ENV_PREFIX}SECTION__KEY "
                f"(e.g. {ENV_PREFIX}DASK__ADDRESS)"
            )
        try:
            value = yaml.safe_load(env[name])
        except yaml.YAMLError:
            value = env[name]
        out.append((keys, value))
    return out


def _set_nested(data: dict[str, Any], keys: list[str], value: Any, source: str) -> None:
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            path = ".".join(keys[: i + 1])
            raise ConfigError(f"cannot override {'.'.join(keys)}: {path} in {source} is not a section")
        node = child
    node[keys[-1]] = value


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = loc.rsplit(".", 1)[0] if "." in loc else None
            allowed = _allowed_keys([p for p in err["loc"][:-1]])
            close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            hint += (
                f" Allowed keys{' in ' + parent if parent else ''}: {', '.join(allowed)}" if allowed else ""
            )
            lines.append(f"unknown key '{loc}'{hint}")
        elif err["type"] == "value_error" and not err["loc"]:  # a whole-config check: its message says it all
            lines.append(err["msg"].removeprefix("Value error, "))
        else:
            lines.append(f"{loc}: {err['msg']} (got {_excerpt(err.get('input'))})")
    head = (
        f"invalid configuration in {source}: "
        if len(lines) == 1
        else f"invalid configuration in {source}:\n  "
    )
    return head + "\n  ".join(lines)


def _allowed_keys(loc: list[Any]) -> list[str]:
    model: Any = NeuroreconConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_of(field.annotation)
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else []


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside ``annotation`` (``Model | None`` -> ``Model``), else the annotation."""
    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in typing.get_args(annotation):
        if hasattr(arg, "model_fields"):
            return arg
    return annotation
