"""The HTTP transport: AdmissionReviews in and out over Flask, plus health and readiness."""
