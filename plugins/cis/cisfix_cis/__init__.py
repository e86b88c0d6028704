"""The CIS Kubernetes Benchmark, as a cisfix plugin (registered by default, like any other plugin)."""
