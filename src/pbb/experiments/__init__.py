"""Experiments: a run (the whole pipeline), sweeps and their executors, plans and measured
rates, the sample-efficiency analysis, the claims table, and trackers."""
