"""The reconciler: brings namespaces that predate egress-guard, and drift, to what admission makes.

plan.py decides purely; reconciler.py runs one pass against the cluster; loop.py repeats it on
the elected leader (leader_election.py).
"""
