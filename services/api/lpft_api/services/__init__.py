"""What the API does, apart from HTTP: the routers parse a request, call one function here
and shape its answer, so each rule (a quota, a state a job must be in, how a job's spec is
built) has one home that a test or another entry point can reach without a server."""
