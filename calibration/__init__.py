"""INT8 calibration: representative batches through the engine's preprocessing, ranges, cache."""
