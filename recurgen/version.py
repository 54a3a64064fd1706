"""version: recurgen's version, a leaf module (the generated header and the cache key read it)."""

__version__ = "0.1.0"
