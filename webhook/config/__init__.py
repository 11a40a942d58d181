"""Configuration: the policy file (validated, reloadable), the server's settings, and YAML text."""
