"""The steps of a job: the shared load stage, the probe, training, calibration,
evaluation and the model-quality checks."""
