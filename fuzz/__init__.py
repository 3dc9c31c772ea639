"""Fuzz harnesses: bounded under Hypothesis in ``make test``, long in ``make fuzz``.

Each ``test_*.py`` names its invariant in its first comment. ``fuzz/run.py``
runs the same checks for a given number of seconds with fresh seeds, and
``fuzz/corpus/`` holds the seed corpus of hostile requests.
"""
