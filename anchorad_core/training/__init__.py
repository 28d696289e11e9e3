"""Training: phase 1, phase 2 with the auxiliary-feature cache, evaluation and cross-validation."""
