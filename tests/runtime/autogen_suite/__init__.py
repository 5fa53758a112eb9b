"""autogen-core's own runtime tests, run against ``axonbus.runtime`` (see ``test_autogen_suite``).

- ``sdist``: fetch autogen-core's source distribution (pinned version and sha256, cached).
- ``mapping``: the import table, autogen names -> axonbus names.
- ``rewrite``: rewrite only the import statements of the extracted test files.
- ``expected``: the tests that run, and the deliberate differences with their reasons.
- ``autogen_test_utils``: our own equivalents of autogen's unpublished test helpers.
"""
