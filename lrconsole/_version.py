"""The version, in a leaf module: the manifest records it without the package face."""

__version__ = "0.1.0"
