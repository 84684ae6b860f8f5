"""creditgate: credit metering and gating for AI generation apps."""
__version__ = "0.1.0"
