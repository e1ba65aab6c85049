"""The ``neurorecon`` command line.

Every command has ``--help``. Failures caused by input or configuration print one message (what is
wrong and how to fix it) and exit with status 2; no traceback unless ``--debug`` is given.
Heavy imports (torch, prefect, dask) happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.errors import NeuroreconError

app = typer.Typer(
    name="neurorecon",
    help=(
        "Neuron reconstruction from light-sheet volumes (OME-Zarr, z/y/x, µm): "
        "phantoms, affinity U-Net, waterz segmentation, kimimaro skeletons, AIS lengths, metrics, reports."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state: dict[str, Any] = {"debug": False}

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (see configs/); NEURORECON__SECTION__KEY env vars override it."),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output OME-Zarr store (directory ending .zarr).")],
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides synth.seed).")] = None,
    config: ConfigOpt = None,
    shape: Annotated[
        str | None, typer.Option(help="Volume shape in voxels as Z,Y,X (overrides synth.shape).")
    ] = None,
    swc: Annotated[
        list[Path] | None,
        typer.Option("--swc", help="Render these SWC files (µm) instead of procedural neurons; repeatable."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store at --out.")] = False,
) -> None:
    """Generate a light-sheet phantom: raw (uint16), labels/ground_truth (uint32), SWC skeletons, lengths.

    Writes OME-Zarr 0.5 block by block (volumes larger than memory are fine) and, beside the store in
    <name>_gt/: skeletons/<label>.swc (µm), lengths.csv, dropout_gaps.csv, params.json and COMPLETE.
    """
    from pipeline.io.config import load_config

    cfg = load_config(config)
    params = cfg.synth
    updates: dict[str, Any] = {}
    if seed is not None:
        updates["seed"] = seed
    if shape is not None:
        updates["shape"] = _parse_triple(shape, "--shape")
    if swc:
        updates["swc_files"] = tuple(swc)
    if updates:
        params = _revalidate(params, updates)
    from pipeline.io.phantom import write_phantom

    result = write_phantom(out, params, overwrite=overwrite, progress=True)
    typer.echo(f"wrote {result.store}  (raw + labels/ground_truth)")
    typer.echo(f"wrote {result.skeleton_dir}/  ({result.n_objects} SWC files, µm)")
    typer.echo(f"wrote {result.lengths_csv}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config with a train: section (e.g. configs/train_tiny.yaml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints/, log.csv, data/.")],
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints in --out and start over.")] = False,
) -> None:
    """Train the U-Net: BCE + Dice pretraining, then topology-loss fine-tuning; resumes if interrupted.

    Rerunning the same command after an interruption continues from OUT/checkpoints/last.pt and ends
    with the same weights as an uninterrupted run. Progress goes to a bar and OUT/log.csv.
    """
    from pipeline.errors import ConfigError
    from pipeline.io.config import load_config

    cfg = load_config(config)
    if cfg.train is None:
        raise ConfigError(f"{config} has no train: section; see configs/train_tiny.yaml for an example")
    from pipeline.train import train as run_training

    result = run_training(cfg.train, out_dir=out, resume=not fresh, progress=True)
    typer.echo(f"{'finished' if result.finished else 'stopped'} at step {result.step}; "
               f"checkpoint {result.checkpoint}; log {result.log}")
    if result.val_metrics:
        typer.echo("validation: " + ", ".join(f"{k}={v:.4g}" for k, v in result.val_metrics.items()
                                               if isinstance(v, int | float)))


@app.command()
def segment(
    config: Annotated[Path, typer.Argument(help="YAML config with a segment: section (and optionally dask:).")],
) -> None:
    """Raw OME-Zarr -> affinities -> waterz fragments -> segmentation, block by block on Dask.

    Runs on a local Dask cluster, or on the cluster at dask.address. Writes affinities.zarr,
    fragments.zarr, segmentation.zarr and state/ in segment.out; rerunning resumes where it stopped.
    """
    from pipeline.errors import ConfigError
    from pipeline.io.config import load_config

    cfg = load_config(config)
    if cfg.segment is None:
        raise ConfigError(f"{config} has no segment: section; see configs/segment_phantom.yaml for an example")
    from flows.blockwise import dask_client
    from flows.segment import segment_raw

    d = cfg.dask
    with dask_client(d.address, n_workers=d.n_workers, threads_per_worker=d.threads_per_worker,
                     memory_limit=d.memory_limit) as client:
        outputs = segment_raw(cfg.segment, client=client, progress=True)
    typer.echo(f"affinities:   {outputs.affinities}")
    typer.echo(f"fragments:    {outputs.fragments}")
    typer.echo(f"segmentation: {outputs.segmentation}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Phantom seed.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing demo run.")] = True,
) -> None:
    """The main job on embedded defaults: generate a phantom with signal dropout and reconstruct it."""
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    params = PhantomParams(seed=seed)
    result = write_phantom(out / "volume.zarr", params, overwrite=overwrite, progress=True)
    typer.echo(f"phantom written to {result.store} ({result.n_objects} objects)")
    typer.echo(f"ground-truth skeletons in {result.skeleton_dir}, lengths in {result.lengths_csv}")


def _parse_triple(text: str, name: str) -> tuple[int, int, int]:
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"{name} must be three integers Z,Y,X; got {text!r}") from None
    if len(values) != 3:
        raise typer.BadParameter(f"{name} must be three integers Z,Y,X; got {text!r}")
    return values  # type: ignore[return-value]


def _revalidate(model: Any, updates: dict[str, Any]) -> Any:
    from pipeline.errors import ConfigError

    try:
        return type(model).model_validate({**model.model_dump(), **updates})
    except Exception as exc:  # pydantic.ValidationError
        raise ConfigError(f"invalid command-line option: {exc}") from None


def main() -> None:
    """Console entry point: run the app, turning domain errors into one clear message."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    try:
        app(standalone_mode=False)
    except NeuroreconError as exc:
        if _state["debug"]:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(0)
    except ClickException as exc:  # usage errors: bad option values, unknown options
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
