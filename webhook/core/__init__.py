"""The pure policy core: request + namespace labels + policy -> Decision.

Nothing in this package performs I/O, reads the clock or the environment, or imports a web
framework or the Kubernetes client (an import-linter contract holds this).
"""
