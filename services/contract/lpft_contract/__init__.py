"""What the API and the workers share: settings, job and dataset records, the Redis store and
task names. Import-light on purpose: the API image does not need the worker's code."""
