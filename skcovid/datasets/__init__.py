"""Loaders for CT-slice image collections."""

from ._folder import load_image_folder
from ._sample import load_sample_ct

__all__ = ["load_image_folder", "load_sample_ct"]
