"""Measurement: counts (parameters, operations, bytes), the one timer, the profiler, and
``bench``, which times every backend side by side in fresh processes."""
