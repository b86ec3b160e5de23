"""Evaluation: scores, calibration, comparisons, the bootstrap, splits, reports and explanations."""
