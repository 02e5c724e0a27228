"""Experiments: one module per group of the paper's claims; each writes result files."""
