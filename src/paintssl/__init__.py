"""paintssl: self-supervised Cell Painting representations and JUMP-style profiles."""

CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")
"""Default Cell Painting channel names, in the order the merged 5-channel TIFFs store them."""

__all__ = ["CHANNELS"]
