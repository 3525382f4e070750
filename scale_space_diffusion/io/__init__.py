"""Persistence: Lightning checkpoints (reading, checksums, atomic writes, older layouts) and ``save_pretrained``
folders. ``io`` imports ``models``, never the reverse (the models' entry points import it inside their bodies)."""

from .checkpoint_io import AtomicCheckpointIO
from .loading import load_model
from .pretrained import export_checkpoint, from_pretrained, save_pretrained

__all__ = ["AtomicCheckpointIO", "export_checkpoint", "from_pretrained", "load_model", "save_pretrained"]
