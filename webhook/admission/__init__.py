"""The admission controller and the AdmissionReview wire format, shared by server and CLI."""
