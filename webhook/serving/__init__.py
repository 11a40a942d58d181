"""Serving: certificates, TLS, and gunicorn running the Flask app; the composition root."""
