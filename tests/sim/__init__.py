"""Deterministic simulation of a pair of engines (issue 4).

``python -m tests.sim --seeds N`` runs N seeds; ``--seed S`` replays one and
prints its trace; ``--measure`` and ``--hours H`` produce the distributions
in ``docs/failover.md``.
"""
