"""Baseline layer families, one module each, registered by name.

Each module defines a ``LayerFamily`` that ``pyproject.toml`` lists in the
``aol.families`` entry-point group.
"""
