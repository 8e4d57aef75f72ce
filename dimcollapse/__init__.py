"""dimcollapse: measure dimensional collapse in video representation models."""

__version__ = "0.1.0"
