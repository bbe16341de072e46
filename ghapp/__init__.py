"""ghapp: a GitHub App server that deploys on request."""

__version__ = "0.1.0"
