"""paintssl: self-supervised Cell Painting representations and JUMP-style profiles.

One subpackage per pipeline stage (docs/ARCHITECTURE.md); shared table conventions in
``paintssl.tables``.
"""
