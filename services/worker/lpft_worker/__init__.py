"""Celery workers that run lpft_core jobs: thin shells over ``finetune``."""
