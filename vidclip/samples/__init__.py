"""Synthetic sample videos (real codecs, known content) for the demo, the notebook, the tests and
the benchmarks.  Nothing in the core imports this package."""
