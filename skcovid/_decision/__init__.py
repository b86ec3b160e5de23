"""From probabilities to decisions: temperature, thresholds, operating points, patients (no PyTorch)."""
