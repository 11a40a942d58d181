"""Configuration: the policy file (validated, reloadable) and the server's settings."""
