"""The library's version (the one place it is written; pyproject reads it)."""

VERSION = "0.2.0"
