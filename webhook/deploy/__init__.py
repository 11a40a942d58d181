"""The Kubernetes manifests that deploy egress-guard, built as data from the policy file.

`egress-guard manifests` renders them and `deploy/` holds them for the example policy, so the label
prefix the server reads and the one the webhook configurations select on cannot disagree.
"""
