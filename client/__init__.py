"""The weir client: CLI, JobManager client, job packaging and the local-cluster launcher."""
