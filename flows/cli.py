"""The ``neurorecon`` command line: commands only — parse, call a stage driver or flow, print.

Every command has ``--help``. Settings come from the config (``--config``, ``NEURORECON__SECTION__KEY``
environment overrides); an option of the same name overrides its key for one run and reads its default
from the config model, never restating it. Failures caused by input or configuration print one message
(what is wrong and how to fix it) and exit with status 2; blocks that still fail after their retries,
and a full disk, exit with status 3 (the run is incomplete and resumable; block ids are in the message,
the log and the run's report). No traceback unless
``--debug`` is given. Heavy imports (torch, prefect, dask) happen inside the commands so ``--help``
stays fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from pipeline.errors import BlockFailure, ConfigError, DiskFullError, NeuroreconError
from pipeline.metrics.config import EvaluateConfig
from pipeline.report.config import ReportConfig
from pipeline.skeleton.config import SkeletonizeConfig
from pipeline.skeleton.params import TeasarParams

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
    typer.Option("--config", "-c",
                 help="YAML config (see configs/); NEURORECON__SECTION__KEY env vars override it."),
]
#: ``--overwrite`` of every command that writes into a run directory: one meaning everywhere.
OVERWRITE_HELP = (
    "Start over: remove what this command wrote in the output directory before (its block state "
    "included; never inputs or other files) instead of resuming."
)
LabelImageArg = (
    "OME-Zarr label image: a standalone one (RUN/segmentation.zarr) or one inside an image store "
    "(volume.zarr/labels/NAME), local or at a URL (s3://, gs://, https://; read-only)."
)


def _setting(model: type[BaseModel], key: str, section: str, *flags: str, text: str | None = None) -> Any:
    """The option overriding config key ``section.key``: its help is ``text`` (default: the key's
    description) and the model's default, which the option reads and never restates."""
    field = model.model_fields[key]
    value = field.default
    shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else value
    description = text or field.description or key
    help_text = description[:1].upper() + description[1:]
    return typer.Option(*flags, help=f"{help_text} (default: {shown}; config key {section}.{key}).")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    from flows.logs import configure_logging

    _state["debug"] = debug
    configure_logging(verbose=verbose)  # libraries' routine chatter only with --verbose
    if not debug:  # Prefect logs a failed flow's traceback; the one `error:` line says it all
        _drop_prefect_tracebacks()


def _drop_prefect_tracebacks() -> None:
    """Log records of Prefect's loggers keep their message but lose their traceback (unless --debug)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "neurorecon_quiet", False):
        return

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = make(*args, **kwargs)
        if rec.exc_info and rec.name.startswith("prefect"):
            rec.exc_info, rec.exc_text = None, None
        return rec

    record.neurorecon_quiet = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record)


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output OME-Zarr store (directory ending .zarr).")],
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides synth.seed).")] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="What the volume shows: 'neurons' (a sparse cytosolic fill, one label per neuron) "
                          "or "
                          "'ais' (an AIS immunostain, one label per AIS) (overrides synth.kind)."),
    ] = None,
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

    --kind neurons (default): whole neurons, one label each, whose neurites touch, run together and
    cross; --kind ais: an AIS immunostain, one label per AIS. Writes OME-Zarr 0.5 block by block
    (volumes larger than memory are fine) and, beside the store in <name>_gt/: skeletons/<label>.swc
    (µm), lengths.csv, ais.csv, dropout_gaps.csv, params.json (with the kind) and COMPLETE.
    """
    from pipeline.io.config import load_config
    from pipeline.io.lock import output_lock
    from pipeline.io.phantom import write_phantom

    cfg = load_config(config)
    params = _override(cfg.synth, seed=seed, kind=kind, shape=_parse_triple(shape, "--shape", int),
                       swc_files=tuple(swc) if swc else None)
    out = _confined(out, cfg, "--out")
    with output_lock(out.parent):  # the folder a run may hold: a phantom never replaces a run's outputs
        result = write_phantom(out, params, overwrite=overwrite, progress=True)
    typer.echo(f"wrote {result.store}  (raw + labels/ground_truth)")
    typer.echo(f"wrote {result.skeleton_dir}/  ({result.n_objects} SWC files, µm)")
    typer.echo(f"wrote {result.lengths_csv}")


@app.command()
def train(
    config: Annotated[
        Path, typer.Argument(help="YAML config with a train: section (e.g. configs/train_tiny.yaml).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints/, log.csv, data/.")],
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", "--fresh",
        help="Start over: remove the checkpoints and log.csv in --out (data/ and other files are kept) "
             "instead of resuming.")] = False,
) -> None:
    """Train the U-Net: BCE + Dice pretraining, then topology-loss fine-tuning; resumes if interrupted.

    Rerunning the same command after an interruption continues from OUT/checkpoints/last.pt and ends
    with the same weights as an uninterrupted run; --overwrite starts over. Progress goes to a bar and
    OUT/log.csv.
    """
    from pipeline.errors import ConfigError
    from pipeline.io.config import load_config
    from pipeline.io.lock import output_lock
    from pipeline.train import train as run_training

    cfg = load_config(config)
    if cfg.train is None:
        raise ConfigError(f"{config} has no train: section; see configs/train_tiny.yaml for an example")
    with output_lock(_confined(out, cfg, "--out")):
        if overwrite:
            from pipeline.train.trainer import remove_training

            _removed(remove_training(out))
        result = run_training(cfg.train, out_dir=out, resume=True, progress=True)
    typer.echo(f"{'finished' if result.finished else 'stopped'} at step {result.step}; "
               f"checkpoint {result.checkpoint}; log {result.log}")
    if result.val_metrics:
        typer.echo("validation: " + ", ".join(f"{k}={v:.4g}" for k, v in result.val_metrics.items()
                                               if isinstance(v, int | float)))


@app.command()
def segment(
    config: Annotated[
        Path, typer.Argument(help="YAML config with a segment: section (and optionally dask:).")
    ],
    thresholds: Annotated[str | None, typer.Option(
        "--thresholds", metavar="T1,T2,...",
        help="A threshold sweep: also write the segmentation at each of these agglomeration thresholds "
             "(comma-separated, each in [0, segment.max_threshold]) as "
             "segment.out/segmentation_t<threshold>.zarr. The watershed "
             "and region graph are computed once; a rerun with new thresholds (or a new segment.threshold) "
             "redoes only the union and relabel, never inference or watershed.")] = None,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP + " Removes every output of the run "
                                                "directory: later stages derive from the segmentation.")
                         ] = False,
) -> None:
    """Raw OME-Zarr -> affinities -> waterz fragments -> segmentation, block by block on Dask.

    Runs on a local Dask cluster, or on the cluster at dask.address. Writes affinities.zarr,
    fragments.zarr, segmentation.zarr (at segment.threshold) and state/ in segment.out; rerunning resumes
    where it stopped, also after the run directory was moved or copied elsewhere (update segment.out).

    Each block records its region graph (fragment pairs with the score at which waterz merges them), so
    thresholds are cheap to try: `neurorecon segment CONFIG --thresholds 0.3,0.5,0.7` writes
    segmentation_t0.3.zarr, segmentation_t0.5.zarr and segmentation_t0.7.zarr, each identical to a
    run at that threshold, and a rerun with other thresholds (or another segment.threshold) redoes only
    the union and relabel. A rerun with other block, halo or background settings is refused:
    --overwrite starts over.
    """
    from flows.preflight import check_output, check_run, require_segment
    from flows.stages.runner import dask_client
    from flows.stages.segment import segment_raw
    from pipeline.io.config import load_config
    from pipeline.io.layout import RunLayout, remove_outputs, threshold_key
    from pipeline.io.lock import output_lock
    from pipeline.io.omezarr import read_provenance

    cfg = load_config(config)
    seg = require_segment(cfg, config)
    sweep = _parse_thresholds(thresholds, max_threshold=seg.max_threshold)
    seg = check_output(cfg)  # where the lock goes, before anything heavy
    with output_lock(seg.out):
        inputs = check_run(cfg, evaluate=False)  # a refused run removes nothing
        if overwrite:
            run = RunLayout(seg.out)
            _removed(remove_outputs(run, run.run_outputs, inputs=[seg.raw]))
        with dask_client(cfg.dask, gpu_ids=inputs.gpu_ids) as client:
            outputs = segment_raw(seg, inputs=inputs, max_retries=cfg.dask.max_retries, client=client,
                                  thresholds=sweep)
    typer.echo(f"affinities:   {outputs.affinities}")
    typer.echo(f"fragments:    {outputs.fragments}")
    for label, path in [("segmentation:", outputs.segmentation),
                        *((f"  t={threshold_key(t)}:", p) for t, p in outputs.swept.items())]:
        record = read_provenance(path)
        typer.echo(f"{label:<14}{path}  ({record.get('n_segments', '?')} segments at threshold "
                   f"{threshold_key(record['threshold']) if 'threshold' in record else '?'})")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path("runs/demo"),
    seed: Annotated[int | None, typer.Option(help="Phantom seed (default: the demo's own).")] = None,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP + " The phantoms are always written "
                                                "again.")] = False,
) -> None:
    """The main job on embedded defaults: light-sheet phantoms with signal dropout, reconstructed.

    For each kind of volume — neurons (a sparse fill, one object per neuron) and ais (an AIS stain, one
    object per AIS) — generates OUT/<kind>/volume.zarr and runs the reconstruct flow on it (a temporary
    Prefect server, Dask LocalCluster, the shipped model of that kind): affinities -> segmentation ->
    skeletons -> lengths -> metrics against the phantom's ground truth -> OUT/<kind>/report.html.
    Prints where the reports are, and how to look at a run (`neurorecon view`).
    """
    import time

    from flows.reconstruct import run_demo
    from pipeline.io.config import load_config
    from pipeline.io.lock import output_lock

    start = time.perf_counter()
    with output_lock(_confined(out, load_config(), "--out")):
        reports = run_demo(out, seed=seed, overwrite=overwrite)
    for kind, report in reports.items():
        typer.echo(f"{kind} report: {report}   (PDF: {report.with_suffix('.pdf')})")
    seconds = time.perf_counter() - start
    typer.echo(f"done in {seconds:.0f} s; open a report with: xdg-open {reports['neurons']}")
    typer.echo(f"look at a run in neuroglancer with: neurorecon view {reports['neurons'].parent}")


@app.command()
def run(
    config: Annotated[
        Path, typer.Argument(help="YAML config with a segment: section (raw, out, ...) and dask:.")
    ],
    thresholds: Annotated[str | None, typer.Option(
        "--thresholds", metavar="T1,T2,...",
        help="A threshold sweep, as for `neurorecon segment`: also write segmentation_t<threshold>.zarr "
             "for each threshold; metrics.json and the report compare them.")] = None,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP + " Removes every output of the run "
                                                "directory.")] = False,
) -> None:
    """Reconstruct any OME-Zarr volume: the reconstruct flow on the config's Dask cluster.

    raw -> affinities -> segmentation -> skeletons -> lengths -> metrics (if evaluate.gt_labels is
    set) -> report, in segment.out, with the skeletonize:, evaluate: and report: sections. Rerunning
    resumes where it stopped, also after the run directory was moved or copied elsewhere (update
    segment.out). A rerun with other parameters is refused: --overwrite starts over; a rerun with
    --thresholds only adds the sweep's segmentations (no inference or watershed again).
    """
    from flows.preflight import require_segment
    from flows.reconstruct import run_reconstruct
    from pipeline.io.config import load_config

    cfg = load_config(config)
    seg = require_segment(cfg, config)
    sweep = _parse_thresholds(thresholds, max_threshold=seg.max_threshold)
    typer.echo(f"report: {run_reconstruct(cfg, overwrite=overwrite, thresholds=sweep)}")


@app.command()
def skeletonize(
    segmentation: Annotated[str, typer.Argument(help=LabelImageArg)],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Run directory: skeletons/, skeletons_precomputed/, lengths.csv."),
    ],
    block_shape: Annotated[
        str | None,
        _setting(SkeletonizeConfig, "block_shape", "skeletonize", text="Block shape Z,Y,X, voxels"),
    ] = None,
    halo_um: Annotated[
        float | None, _setting(SkeletonizeConfig, "halo_um", "skeletonize", "--halo-um")
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option("--voxel-size", help="Voxel size Z,Y,X in µm, overriding the image metadata."),
    ] = None,
    scale: Annotated[float | None, _setting(TeasarParams, "scale", "skeletonize.teasar", text=(
        "TEASAR invalidation radius = scale x distance-to-boundary + const-um"))] = None,
    const_um: Annotated[float | None, _setting(TeasarParams, "const_um", "skeletonize.teasar", "--const-um",
                                               text="TEASAR constant invalidation radius, µm")] = None,
    soma: Annotated[bool | None, _setting(TeasarParams, "soma", "skeletonize.teasar", "--soma/--no-soma",
                                          text="kimimaro's soma handling (off for AIS and neurites)")] = None,
    tick_threshold_um: Annotated[
        float | None, _setting(SkeletonizeConfig, "tick_threshold_um", "skeletonize", "--tick-threshold-um")
    ] = None,
    dust_threshold_um3: Annotated[
        float | None,
        _setting(SkeletonizeConfig, "dust_threshold_um3", "skeletonize", "--dust-threshold-um3"),
    ] = None,
    one_piece_max_voxels: Annotated[
        int | None,
        _setting(SkeletonizeConfig, "one_piece_max_voxels", "skeletonize", "--one-piece-max-voxels"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Local Dask workers; 0 runs serially in this process (default: dask.n_workers)."),
    ] = None,
    config: ConfigOpt = None,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
) -> None:
    """Skeletonize a segmentation block by block (kimimaro TEASAR, fused across blocks); measure every object.

    Writes OUT/skeletons/<label>.swc (µm), OUT/skeletons_precomputed/ (neuroglancer, nm) and OUT/lengths.csv
    (label, length_um, cable_length_um, n_voxels, touches_border, n_endpoints). Objects touching the volume
    border are flagged: they are cut by the field of view and left out of length distributions. Blocks run
    on a local Dask cluster (or dask.address of the config); a rerun resumes.
    """
    from flows.stages.runner import dask_client
    from flows.stages.skeletonize import skeletonize_volume
    from pipeline.io.config import load_config
    from pipeline.io.labels import open_label_image
    from pipeline.io.layout import RunLayout, remove_outputs
    from pipeline.io.lock import output_lock

    cfg = load_config(config)
    teasar = _override(cfg.skeletonize.teasar, scale=scale, const_um=const_um, soma=soma)
    settings = _override(
        cfg.skeletonize, block_shape=_parse_triple(block_shape, "--block-shape", int), halo_um=halo_um,
        tick_threshold_um=tick_threshold_um, dust_threshold_um3=dust_threshold_um3,
        one_piece_max_voxels=one_piece_max_voxels, teasar=teasar,
    )
    out = _confined(out, cfg, "--out")
    seg = _input(segmentation, "SEGMENTATION")
    open_label_image(seg)  # bad input fails here, before a Dask cluster starts
    kwargs: dict[str, Any] = dict(
        out=out, settings=settings, max_retries=cfg.dask.max_retries,
        voxel_size_um=_parse_triple(voxel_size, "--voxel-size", float), progress=True, overwrite=overwrite,
    )
    n_workers = cfg.dask.n_workers if workers is None else workers
    with output_lock(out):
        if overwrite:
            run = RunLayout(out)
            _removed(remove_outputs(run, run.skeletonize_outputs, inputs=[seg]))
        if n_workers == 0 and not cfg.dask.address:
            result = skeletonize_volume(seg, client=None, **kwargs)
        else:
            with dask_client(cfg.dask, n_workers=max(n_workers, 1)) as client:
                result = skeletonize_volume(seg, client=client, **kwargs)
    typer.echo(f"{result.n_skeletons} skeletons of {result.n_objects} objects")
    typer.echo(f"wrote {result.swc_dir}/  (SWC, µm)")
    typer.echo(f"wrote {result.precomputed_dir}/  (neuroglancer precomputed, nm)")
    typer.echo(f"wrote {result.lengths_csv}")


@app.command()
def evaluate(
    segmentation: Annotated[str, typer.Option("--segmentation", "-s", help=LabelImageArg)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory; metrics.json is written there.")],
    gt_labels: Annotated[
        str | None, _setting(EvaluateConfig, "gt_labels", "evaluate", "--gt-labels", "-g")
    ] = None,
    gt_swc: Annotated[Path | None, _setting(EvaluateConfig, "gt_swc", "evaluate", "--gt-swc")] = None,
    min_label_nodes: Annotated[
        int | None, _setting(EvaluateConfig, "min_label_nodes", "evaluate", "--min-label-nodes")
    ] = None,
    dust_threshold_um3: Annotated[
        float | None,
        _setting(SkeletonizeConfig, "dust_threshold_um3", "skeletonize", "--dust-threshold-um3",
                 text="labels of at most this volume, µm³, are not objects of the length metrics, as "
                      "skeletonize drops them"),
    ] = None,
    voxel_size: Annotated[
        str | None, typer.Option("--voxel-size", help="Voxel size Z,Y,X in µm, overriding the metadata.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Local Dask workers; 0 runs serially in this process (default: dask.n_workers)."),
    ] = None,
    config: ConfigOpt = None,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP + " (metrics.json is written anew on every "
                                                "run; --overwrite removes the old one first.)")] = False,
) -> None:
    """Compare a segmentation with ground truth: voxel, skeleton (ERL, splits, merges) and length metrics.

    Voxel metrics (Dice, accuracy, ARI, VOI) on the label images; skeleton metrics against ground-truth SWC
    skeletons; instance precision/recall and Wasserstein/SSMD of the length distributions (AIS continuity
    paper, 2.4-2.5). Both label images are read block by block (evaluate.block_shape) on a local Dask
    cluster (or dask.address of the config), an object at a time where one is needed whole. Writes
    OUT/metrics.json.
    """
    import functools
    import json

    from flows.stages.evaluate import evaluate_run
    from flows.stages.runner import dask_client
    from pipeline.errors import ConfigError
    from pipeline.io.config import load_config
    from pipeline.io.layout import RunLayout, remove_outputs
    from pipeline.io.lock import output_lock

    cfg = load_config(config)
    settings = _override(cfg.evaluate, gt_labels=gt_labels, gt_swc=gt_swc, min_label_nodes=min_label_nodes)
    dust = _override(cfg.skeletonize, dust_threshold_um3=dust_threshold_um3).dust_threshold_um3
    if settings.gt_labels is None:
        raise ConfigError("no ground truth to evaluate against: pass --gt-labels (-g) or set "
                          "evaluate.gt_labels "
                          "in the config")
    out = _confined(out, cfg, "--out")
    seg = _input(segmentation, "--segmentation")
    with output_lock(out):
        if overwrite:
            _removed(remove_outputs(RunLayout(out), [RunLayout(out).metrics_json],
                                    inputs=[seg, settings.gt_labels]))
        n_workers = cfg.dask.n_workers if workers is None else workers
        cluster = (None if n_workers == 0 and not cfg.dask.address
                   else functools.partial(dask_client, cfg.dask, n_workers=max(n_workers, 1)))
        path = evaluate_run(seg, settings.gt_labels, out=out, gt_swc=settings.gt_swc,
                            min_label_nodes=settings.min_label_nodes, dust_threshold_um3=dust,
                            block_shape=settings.block_shape,
                            voxel_size_um=_parse_triple(voxel_size, "--voxel-size", float),
                            cluster=cluster, max_retries=cfg.dask.max_retries, progress=True)
    metrics = json.loads(path.read_text())
    v, k, ln = metrics.get("voxel", {}), metrics.get("skeleton", {}), metrics.get("length", {})

    def f(section: dict, key: str, fmt: str = "{:.3f}") -> str:
        value = section.get(key)
        return "n/a" if value is None or isinstance(value, str) else fmt.format(value)

    typer.echo(f"Dice {f(v, 'dice')}, VOI split/merge {f(v, 'voi_split_bits')}/{f(v, 'voi_merge_bits')} bits")
    if k:
        typer.echo(
            f"ERL {f(k, 'erl_um', '{:.1f}')} µm (normalized {f(k, 'normalized_erl')}), edge accuracy "
            f"{f(k, 'edge_accuracy_pct', '{:.1f}')} %, splits/neuron {f(k, 'splits_per_neuron', '{:.2f}')} "
            f"({k.get('n_skeletons')} GT skeletons)"
        )
    else:
        typer.echo("no ground-truth skeletons (--gt-swc): skeleton metrics skipped")
    typer.echo(
        f"precision {f(ln, 'precision')}, recall {f(ln, 'recall')}, "
        f"Wasserstein {f(ln, 'wasserstein_um', '{:.2f}')} µm, SSMD {f(ln, 'ssmd')}"
    )
    typer.echo(f"wrote {path}")


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="Run directory with lengths.csv (from `neurorecon skeletonize`).")
    ],
    raw: Annotated[
        str | None,
        typer.Option(
            help="Raw OME-Zarr image for the projections, a path or a URL (default: the image store of a "
            ".../labels/NAME segmentation)."
        ),
    ] = None,
    segmentation: Annotated[
        str | None, typer.Option(help="Label image to overlay, a path or a URL (default: the one skeletonize "
                                      "recorded).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write the report (default: RUN_DIR).")
    ] = None,
    figures: Annotated[
        bool | None, _setting(ReportConfig, "figures", "report", "--figures/--no-figures")
    ] = None,
    config: ConfigOpt = None,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP + " (the report is written anew on every "
                                                "run; --overwrite first removes the old report.html, "
                                                "report.pdf and figures.)")] = False,
) -> None:
    """Write RUN_DIR/report.html (self-contained) and report.pdf: lengths, projections, metrics, provenance.

    Uses RUN_DIR/lengths.csv, and skeletonize.json, metrics.json (from `neurorecon evaluate`) and skeletons/
    where present.
    """
    from flows.stages.report import report_run
    from pipeline.io.config import load_config
    from pipeline.io.layout import RunLayout, remove_outputs
    from pipeline.io.lock import output_lock

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter
    cfg = load_config(config)
    settings = _override(cfg.report, figures=figures)
    target = _confined(out if out is not None else run_dir, cfg, "--out")
    raw_image = _input(raw, "--raw") if raw is not None else None
    seg = _input(segmentation, "--segmentation") if segmentation is not None else None
    with output_lock(target):
        if overwrite:
            place = RunLayout(target)
            _removed(remove_outputs(place, place.report_outputs,
                                    inputs=[p for p in (run_dir / "lengths.csv", raw_image, seg) if p]))
        written = report_run(run_dir, segmentation=seg, raw=raw_image, out=out, figures=settings.figures)
    for path in written.values():
        typer.echo(f"wrote {path}")


@app.command()
def view(
    run_dir: Annotated[
        Path, typer.Argument(help="Run directory with segmentation.zarr (`neurorecon run`, `segment`).")
    ],
    raw: Annotated[
        str | None,
        typer.Option(help="Raw OME-Zarr image under the segmentation, a local path (default: the one the "
                          "run recorded, where it lies inside the run directory)."),
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free port).")] = 0,
    bind: Annotated[
        str, typer.Option(help="Address to serve on; 0.0.0.0 serves every network interface (anyone who "
                               "reaches this machine sees the run).")
    ] = "127.0.0.1",
    napari: Annotated[
        bool, typer.Option("--napari", help="Open the run in napari (pip install 'napari\\[all]') instead.")
    ] = False,
) -> None:
    """Look at a run: serve it on this machine and print a neuroglancer link.

    Layers: the raw image, the segmentation with its skeletons (each object's length and cable length on
    hover and in the segment list, from lengths.csv) and the fragments (hidden), at the voxel size of
    their OME metadata. Serves until Ctrl-C; writes nothing. Over SSH: ssh -L PORT:localhost:PORT HOST,
    then `neurorecon view RUN --port PORT` there and open the link here.
    """
    import threading

    from flows.interrupt import stop_on_signals
    from flows.view import load_run_view, open_in_napari, serve
    from pipeline.errors import InputDataError
    from pipeline.io.location import is_url

    if raw is not None and is_url(raw):
        raise InputDataError(f"--raw {raw} is a URL: neurorecon view serves local images only (for now); "
                             "pass a local copy or a mounted path of the raw image")
    loaded = load_run_view(run_dir, raw=Path(raw) if raw is not None else None)
    for note in loaded.notes:
        typer.echo(f"note: {note}", err=True)
    if napari:
        open_in_napari(loaded)
        return
    served = serve(loaded, bind=bind, port=port)
    typer.echo(f"neuroglancer: {served.url}")
    typer.echo("open this in a browser; Ctrl-C to stop")
    with stop_on_signals(f"neurorecon view {run_dir}", resumable=False):
        threading.Event().wait()  # the server runs in a background thread until the signal ends the process


@app.command()
def publish(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (`neurorecon run`, `segment`).")],
    url: Annotated[str, typer.Argument(help="Where its products go: s3://bucket/prefix, gs://..., az://...")],
    affinities: Annotated[
        bool, typer.Option(help="Publish affinities.zarr too (the largest output).")
    ] = False,
) -> None:
    """Copy a finished run's products to object storage, for others to read (neuroglancer, napari, zarr).

    The segmentation(s) and fragments with their pyramids, the skeletons (SWC and neuroglancer
    precomputed), lengths.csv, metrics.json and the report go to URL/<same names>; the block state stays.
    Safe to interrupt and repeat: a rerun copies only what is missing or changed, removes what the run no
    longer has, and writes URL/PUBLISHED.json last. Credentials from the environment (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY or AWS_PROFILE; AWS_ENDPOINT_URL for an S3-compatible server).
    """
    from pipeline.errors import InputDataError
    from pipeline.io.lock import output_lock
    from pipeline.io.publish import check_publish_url, publish_run

    target = check_publish_url(url, what="URL")
    if not run_dir.is_dir():
        raise InputDataError(f"RUN {run_dir} is no directory: pass the run directory of a finished "
                             "`neurorecon run` or `neurorecon segment` (its segment.out)")
    with output_lock(run_dir):  # not while a command writes the run
        done = publish_run(run_dir, target, affinities=affinities)
    typer.echo(f"published {run_dir} to {done.url}: {done.files} files ({done.bytes / 1e6:.1f} MB), "
               f"{done.copied} copied now, {done.removed} stale removed")


# -- helpers ------------------------------------------------------------------------------------------------


@app.command("gpu-check")
def gpu_check() -> None:
    """Whether this process can run neurorecon on a GPU: lists the visible CUDA devices (name, compute
    capability, free memory) and exits 1 when none is usable (a CPU-only torch, no driver, no device,
    or a card this torch build has no kernels for). The Docker image's health check.
    """
    import torch

    from pipeline.inference.cuda import check_cuda, cuda_devices

    devices = cuda_devices()
    for device in devices:
        typer.echo(device.describe())
    try:
        check_cuda("cuda", what="device", fallback="or run on CPU workers (segment.device: cpu)")
    except NeuroreconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    usable = sum(d.supported for d in devices)
    typer.echo(f"{usable} usable CUDA device(s); torch {torch.__version__}, CUDA {torch.version.cuda}")


def _parse_triple(text: str | None, name: str, kind: type) -> tuple | None:
    """``Z,Y,X`` (or ``ZxYxX``) as three ``kind`` values, or None; values are checked where they are used."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    what = "integers" if kind is int else "numbers (µm)"
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"{name} must be three {what} Z,Y,X; got {text!r}") from None
    if len(values) != 3:
        raise typer.BadParameter(f"{name} must be three {what} Z,Y,X; got {text!r}")
    return values


def _parse_thresholds(text: str | None, *, max_threshold: float) -> tuple[float, ...]:
    """``--thresholds T1,T2,...``: agglomeration thresholds in [0, ``max_threshold``] (none without the
    option; :func:`flows.preflight.check_thresholds`)."""
    from flows.preflight import check_thresholds

    if text is None:
        return ()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"--thresholds must be numbers separated by commas (e.g. 0.3,0.5,0.7); got "
                                 f"{text!r}") from None
    if not values:
        raise typer.BadParameter(f"--thresholds must be one or more numbers in [0, 1] (waterz's 1 - mean "
                                 f"affinity), e.g. 0.3,0.5,0.7; got {text!r}")
    try:
        return check_thresholds(values, max_threshold=max_threshold)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _override(model: Any, **updates: Any) -> Any:
    """``model`` with the options the user gave (those not None), validated like the config file."""
    from pydantic import ValidationError

    from pipeline.errors import ConfigError

    given = {k: v for k, v in updates.items() if v is not None}
    if not given:
        return model
    try:
        return type(model).model_validate({**model.model_dump(), **given})
    except ValidationError as exc:  # one line per problem, naming the option, what it got, what it takes
        problems = [
            f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        ]
        raise ConfigError("invalid command-line option " + "; ".join(problems)) from None


def _removed(paths: list[Path]) -> None:
    """Say what ``--overwrite`` removed."""
    if paths:
        typer.echo("--overwrite removed " + ", ".join(str(p) for p in paths))


def _input(text: str, what: str) -> Any:
    """The input image named on the command line: a local path, or a URL (``s3://``, ``gs://``,
    ``https://``; :mod:`pipeline.io.location`)."""
    from pipeline.errors import ConfigError
    from pipeline.io.location import as_location

    try:
        return as_location(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _confined(path: Path, cfg: Any, what: str) -> Path:
    """``path``, checked to be local (a URL is refused) and to lie inside the configured ``output.root``."""
    from pipeline.io.lock import confine

    confine(path, cfg.output.root, what=what)
    return path


def main() -> None:
    """Console entry point: run the app, turning domain errors into one clear message."""
    import shlex

    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    from flows.interrupt import handle_signals

    handle_signals(shlex.join(["neurorecon", *sys.argv[1:]]))  # until the process ends, exit included
    try:
        code = app(standalone_mode=False)  # without standalone mode, click returns typer.Exit's code
    except NeuroreconError as exc:
        if _state["debug"]:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(3 if isinstance(exc, BlockFailure | DiskFullError) else 2)
    except OSError as exc:  # a full disk where no writer of ours saw it (a library's own file)
        from pipeline.io.diskspace import disk_full_error, is_disk_full

        if _state["debug"] or not is_disk_full(exc):
            raise
        what = f"cannot write {exc.filename}" if exc.filename else "a write failed"
        typer.secho(f"error: {disk_full_error(what, exc.filename or '.')}", fg=typer.colors.RED, err=True)
        sys.exit(3)
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
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
