"""`egress-guard report`: every workload, what its profile lets it reach, and whether it holds."""
