"""Model checkpoints and the training log of a run directory.

A checkpoint is one ``torch.save`` file holding a dict::

    format        "neurorecon-checkpoint"          (anything else is refused)
    version       1
    architecture  the UNet keyword arguments        (in_channels, out_channels, ndim, depth, ...)
    model         the model's state_dict
    optimizer, scheduler, scaler                    state_dicts (training checkpoints)
    step, phase, total_steps                        training progress
    rng           torch / numpy / python / CUDA generator states
    config        the TrainConfig as plain JSON-like data
    metadata      what inference needs besides weights: target kind, normalization, downscale_xy,
                  voxel size and patch shapes
    val_metrics   the latest validation metrics

It is written atomically (a temporary file in the same directory, flushed and fsynced, then renamed
over the target), so an interruption leaves either the previous checkpoint or the new one, never a
partial file. It is read with ``torch.load(weights_only=True)``: no arbitrary code runs on load.

Every failure to read or match a checkpoint is a :class:`pipeline.errors.CheckpointError` whose message
names the file and the problem ("checkpoint runs/x/last.pt has out_channels=1 but the config says 3").

The training log is a CSV file with a fixed header, appended row by row; on resume the rows after the
checkpoint's step are dropped (they will be produced again).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import CheckpointError
from pipeline.io.atomic import atomic_file, write_atomic
from pipeline.io.diskspace import write_error
from pipeline.model import UNet

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "ModelMetadata",
    "TrainingLog",
    "check_architecture",
    "checkpoint_sha256",
    "export_model",
    "load_model",
    "read_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "neurorecon-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("architecture", "model", "step")


@dataclass(frozen=True)
class ModelMetadata:
    """What :func:`load_model` returns beside the network.

    Attributes
    ----------
    path : Path
        The checkpoint file.
    architecture : dict
        UNet keyword arguments (``UNet(**architecture)`` rebuilds the network).
    step : int
        Training steps done when it was written.
    target : str
        ``"affinities"`` or ``"foreground"``: what the output channels mean (apply a sigmoid).
    input : dict
        How to prepare raw data like the training data: ``normalization`` ("percentile" or "dtype"),
        ``percentiles``, ``downscale_xy``, ``voxel_size_um`` (z, y, x of the training volumes, µm),
        ``patch_shape`` and ``output_shape`` (network input/output, spatial).
    val_metrics : dict
        Latest validation metrics (Dice, critical-component counts, ...).
    config : dict
        The whole training configuration.
    """

    path: Path
    architecture: dict[str, Any]
    step: int
    target: str
    input: dict[str, Any] = field(default_factory=dict)
    val_metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (plus ``format``/``version``) to ``path`` atomically.

    Raises
    ------
    ValueError
        If ``payload`` lacks ``architecture``, ``model`` or ``step``.
    OutputError
        If the directory cannot be written.
    """
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {', '.join(missing)}")
    path = Path(path)
    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, fsync=True) as fh:
            torch.save(data, fh)
    except OSError as exc:
        raise write_error(f"cannot write checkpoint {path}", exc, path) from None
    return path


def checkpoint_sha256(path: str | Path) -> str:
    """The sha256 of a checkpoint file: what identifies a model wherever it lies (a run records it).

    Raises
    ------
    CheckpointError
        If the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                digest.update(piece)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and sanity-check a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated or corrupt, not a neurorecon checkpoint, from a newer
        version, or lacks the architecture, weights or step.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    head = b""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(0)
            data = torch.load(fh, map_location=map_location, weights_only=True)
    except Exception as exc:  # RuntimeError, EOFError, BadZipFile, UnpicklingError...: depends on the damage
        raise CheckpointError(_unreadable(path, head, exc)) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        what = f"a {type(data).__name__}" if not isinstance(data, dict) else "a dict without format marker"
        raise CheckpointError(
            f"{path} is not a neurorecon checkpoint (it holds {what}); expected a file written by "
            "`neurorecon train` (checkpoints/last.pt or final.pt of a run directory)"
        )
    version = data.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this neurorecon reads versions up to "
            f"{CHECKPOINT_VERSION} — upgrade neurorecon"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: it lacks {', '.join(missing)}")
    if not isinstance(data["architecture"], dict) or not isinstance(data["model"], dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: architecture or model weights are malformed")
    return data


def check_architecture(
    checkpoint: Mapping[str, Any], expected: Mapping[str, Any], *, path: str | Path
) -> None:
    """Raise CheckpointError naming every architecture setting where ``checkpoint`` differs from ``expected``.

    Examples
    --------
    >>> check_architecture({"architecture": {"out_channels": 1}}, {"out_channels": 3}, path="a.pt")
    Traceback (most recent call last):
    ...
    pipeline.errors.CheckpointError: checkpoint a.pt has out_channels=1 but the config says 3
    """
    saved = _plain(checkpoint.get("architecture", {}))
    want = _plain(expected)
    diffs = []
    for key in sorted(set(saved) | set(want)):
        if key not in saved:
            diffs.append(f"no {key} (the config says {want[key]!r})")
        elif key not in want:
            diffs.append(f"{key}={saved[key]!r} that the config does not have")
        elif saved[key] != want[key]:
            diffs.append(f"{key}={_fmt(saved[key])} but the config says {_fmt(want[key])}")
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} has " + "; ".join(diffs)
            + ("" if len(diffs) == 1 else " — the checkpoint was trained with another architecture")
        )


def load_model(
    path: str | Path, *, device: str | torch.device | None = None
) -> tuple[UNet, ModelMetadata]:
    """Rebuild the U-Net of a checkpoint for inference, in eval mode.

    Parameters
    ----------
    path : str or Path
        A checkpoint file (``OUT_DIR/checkpoints/final.pt`` of a training run).
    device : str or torch.device, optional
        Where to put the model; default CPU.

    Returns
    -------
    (UNet, ModelMetadata)
        The network (outputs logits; apply a sigmoid) and how its input must be prepared.

    Raises
    ------
    CheckpointError
        If the file cannot be read, or its weights do not fit its recorded architecture.

    Examples
    --------
    >>> model, meta = load_model("runs/phantom/checkpoints/final.pt")  # doctest: +SKIP
    >>> meta.target, meta.input["normalization"]  # doctest: +SKIP
    ('affinities', 'percentile')
    """
    data = read_checkpoint(path)
    arch = dict(data["architecture"])
    try:
        kwargs = dict(arch)
        if kwargs.get("downsample_factors") is not None:
            kwargs["downsample_factors"] = [tuple(f) for f in kwargs["downsample_factors"]]
        model = UNet(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} records an invalid architecture {arch}: {exc}") from None
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {path} has weights that do not fit its architecture {arch}: "
            f"{' '.join(first[:3])}"
        ) from None
    model.to(torch.device(device) if device is not None else torch.device("cpu"))
    model.eval()
    meta = data.get("metadata", {}) or {}
    return model, ModelMetadata(
        path=Path(path),
        architecture=arch,
        step=int(data["step"]),
        target=str(meta.get("target", "affinities")),
        input={k: v for k, v in meta.items() if k != "target"},
        val_metrics=dict(data.get("val_metrics", {}) or {}),
        config=dict(data.get("config", {}) or {}),
    )


def export_model(src: str | Path, dst: str | Path) -> Path:
    """Write an inference-only copy of a checkpoint: weights, architecture, metadata, no optimizer state.

    The result loads with :func:`load_model` like the original and is a fraction of its size (AdamW
    keeps two extra tensors per weight).

    Raises
    ------
    CheckpointError
        If ``src`` is not a readable checkpoint.
    """
    data = read_checkpoint(src)
    keep = ("architecture", "model", "step", "metadata", "val_metrics", "config")
    payload = {k: data[k] for k in keep if k in data}
    payload["exported_from"] = str(src)
    return save_checkpoint(dst, payload)


class TrainingLog:
    """A CSV training log with a fixed header: ``append`` rows, ``truncate_after`` on resume.

    Parameters
    ----------
    path : str or Path
        The CSV file (created with its header if absent).
    fieldnames : sequence of str
        Columns; the first must be ``"step"``. An existing file with another header is renamed to
        ``<name>.old.csv`` and a fresh log started.
    """

    def __init__(self, path: str | Path, fieldnames: Sequence[str]) -> None:
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        if not self.fieldnames or self.fieldnames[0] != "step":
            raise ValueError(f"fieldnames must start with 'step'; got {self.fieldnames}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file():
                with open(self.path, newline="", encoding="utf-8") as fh:
                    header = next(csv.reader(fh), None)
                if header != self.fieldnames:
                    self.path.replace(self.path.with_suffix(".old.csv"))
            if not self.path.is_file():
                self._rewrite([])
        except OSError as exc:
            raise write_error(f"cannot write the training log {self.path}", exc, self.path) from None

    def rows(self) -> list[dict[str, str]]:
        """All rows, as strings."""
        with open(self.path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing columns left empty; floats written with 6 significant digits)."""
        unknown = set(row) - set(self.fieldnames)
        if unknown:
            raise ValueError(f"unknown log columns {sorted(unknown)}; expected a subset of {self.fieldnames}")
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, self.fieldnames).writerow({k: _cell(v) for k, v in row.items()})

    def truncate_after(self, step: int) -> None:
        """Drop the rows whose step is greater than ``step`` (atomically)."""
        keep = [r for r in self.rows() if r.get("step", "").strip() and int(r["step"]) <= step]
        self._rewrite(keep)

    def _rewrite(self, rows: list[Mapping[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, buf.getvalue())


# --------------------------------------------------------------------------------------------------


def _unreadable(path: Path, head: bytes, exc: BaseException) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if head.startswith(b"PK"):
        return (
            f"checkpoint {path} is truncated or corrupt and cannot be read ({type(exc).__name__}: {reason}); "
            "delete it and resume from an earlier checkpoint or retrain"
        )
    return (
        f"{path} is not a neurorecon checkpoint (not a torch checkpoint file: "
        f"{type(exc).__name__}: {reason}); "
        "expected a file written by `neurorecon train` (checkpoints/last.pt or final.pt)"
    )


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so saved and configured values compare equal."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _fmt(value: Any) -> str:
    return str(value) if not isinstance(value, str) else repr(value)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, torch.Tensor):
        return f"{float(value):.6g}"
    return value

