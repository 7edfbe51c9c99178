"""NSOR SMS appliance: answers CNIC queries by SMS from an embedded, signed registry."""

__version__ = "0.1.0"
