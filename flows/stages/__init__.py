"""One Dask driver per stage — load -> compute -> save over the blocks of a volume.

:mod:`~flows.stages.predict` (raw -> affinities), :mod:`~flows.stages.segment` (affinities ->
fragments -> segmentation), :mod:`~flows.stages.skeletonize` (segmentation -> skeletons and
``lengths.csv``), :mod:`~flows.stages.evaluate` (-> ``metrics.json``) and :mod:`~flows.stages.report`
(-> ``report.html``). Each hands its per-block function to :func:`flows.stages.runner.run_blocks`,
which runs the blocks on a Dask client (or serially), skips finished ones and reports failures.
"""
