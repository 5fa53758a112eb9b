"""The package version (``axonbus.__version__``), kept apart so any module may name it."""

__version__ = "0.1.0"
