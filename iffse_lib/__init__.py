"""iffse: index the faces in large photo collections and search them by likeness.

Nothing is loaded at import: models load on first use.
"""

__version__ = "0.1.0"
