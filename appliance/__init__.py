"""NSOR SMS appliance: answers CNIC queries by SMS from an embedded, signed registry."""

from .version import __version__

__all__ = ["__version__"]
