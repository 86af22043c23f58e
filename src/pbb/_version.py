"""The version pbb writes into the files it makes (data manifests, summaries)."""

__version__ = "0.1.0"
