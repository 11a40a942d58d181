"""The pure core: request + namespace labels + policy file -> Decision (findings, intents, patch).

Nothing in this package performs I/O, reads the clock or the environment, or imports a web
framework, YAML or the Kubernetes client (import-linter contracts hold this).
"""
