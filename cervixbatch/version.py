"""The release, in one place (pyproject.toml states it too; test_packaging compares)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
