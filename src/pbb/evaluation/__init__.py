"""Evaluation: queries, generators (in process or served), scoring, intervals and the run's
report. It imports nothing of training: a model directory is all it needs."""
