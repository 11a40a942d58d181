"""egress-guard: an admission webhook that puts workload egress under a declared policy."""

__version__ = "0.1.0"
