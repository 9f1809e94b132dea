"""gridloom: an open smart-grid operations stack."""

__version__ = "0.1.0"
