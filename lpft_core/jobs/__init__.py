"""The job kinds (finetune, compare, analysis, recalibrate), multi-seed runs, checkpoints
and ``run_job``, which the worker calls for every kind. ``kinds`` (the registry of kinds) and
``specs`` are light: naming a kind or building its spec imports nothing heavy."""
