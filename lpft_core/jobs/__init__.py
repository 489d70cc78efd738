"""The job kinds (finetune, compare, analysis, recalibrate), multi-seed runs, checkpoints
and the dispatcher the worker calls. ``kinds`` is light: naming a kind imports nothing heavy."""
