"""`egress-guard doctor`: whether enforcement is real on a cluster, as checks over what was read."""
