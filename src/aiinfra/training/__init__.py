"""Training: the model format, the loop, hardware, checkpoints, search."""
