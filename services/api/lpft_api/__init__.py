"""The lpft HTTP API (FastAPI): datasets, jobs, events, metrics, artifacts and predictions."""
