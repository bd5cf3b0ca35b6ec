"""Experiments, datasets and reproductions (top layer: nothing in the library imports this)."""
