"""pimodule: neural Eurorack module."""

__version__ = "0.1.0"
