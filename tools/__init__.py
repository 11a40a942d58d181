"""Development tools that are not part of egress-guard: run with `python -m tools.<name>`."""
