"""Side-by-side benchmarks: axonbus against its anchors, in one process and one run.

Run ``python -m benchmarks.core`` (``--quick`` for a smoke test, ``--json PATH`` to save results).
"""
