"""The cluster layer: the only code that talks to the Kubernetes API (and its static stand-ins)."""
