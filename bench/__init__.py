"""malla's benchmarks: figures and ratios measured side by side in one run (``python -m bench.run``).

Not tests: nothing here gates on time. Each benchmark module has
``run(*, quick, workdir) -> Result``; ``bench.run`` runs them, writes
``bench/results/<name>.json`` and ``bench/REPORT.md``.
"""
