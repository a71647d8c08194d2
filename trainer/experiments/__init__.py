"""Experiments: the paper's comparison over modes and seeds from one config, ablations, the demo and reports.

``config`` (settings and presets), ``stages`` (dataset, SLM, selection, runs), ``results`` (numbers and
tables), ``plots``, ``run`` (``run_experiment``), ``demo`` and ``report`` (a report over run folders).
"""
