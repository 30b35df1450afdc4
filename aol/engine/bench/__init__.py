"""Benchmarks (``python -m aol bench --help``): ratios measured side by side in one run."""
