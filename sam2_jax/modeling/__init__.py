"""Flax (linen) modules for every part of SAM 2, one file per reference component."""
