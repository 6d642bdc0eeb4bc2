"""Metrics: rollups, windows, worst performers, Prometheus collectors.

Where it sits: the lifecycle hook (engine) folds each finished execution into buckets in the store
(:mod:`.rollup`); window queries read the buckets (:mod:`.windows`); ``/metrics`` exports process
counters and gauges read from the store (:mod:`.prom`). It imports the store and the model, never
the engine, the reconciler or the web layer.
"""
