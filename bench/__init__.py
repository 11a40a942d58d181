"""The egress-guard benchmark: `make bench` (or `python -m bench`)."""
