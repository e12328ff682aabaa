"""mediabot's benchmarks (kernels, VAD quality, signaling, latency, capacity); run with ``python -m benchmarks.run``.

Each benchmark is a module with ``run(quick: bool = False) -> Result``; :mod:`benchmarks._report` prints and saves
results (JSON, and a PNG where a picture helps) under ``benchmarks/results/``. A module that draws a picture also
exposes ``png(result: Result, path: Path) -> None``; :mod:`benchmarks.run` passes it to ``save``.
"""
