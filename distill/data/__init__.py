"""Datasets in the pix2pix / CycleGAN folder layouts, and a procedural dataset generator.

- aligned (pix2pix): ``ROOT/{train,test}/*.png``, each image A|B side by side.
- unaligned (CycleGAN): ``ROOT/{trainA,trainB,testA,testB}/``.
- image folder (unconditional): ``ROOT/*.png`` (or ``ROOT/train/``).

Every sample is a float tensor in [-1, 1], shape (C, H, W).
"""

from distill.data.datasets import (
    IMG_EXTENSIONS,
    AlignedDataset,
    ImageFolderDataset,
    TransformConfig,
    UnalignedDataset,
    build_dataset,
    list_images,
)
from distill.data.synth import synthesize

__all__ = [
    "IMG_EXTENSIONS",
    "AlignedDataset",
    "ImageFolderDataset",
    "TransformConfig",
    "UnalignedDataset",
    "build_dataset",
    "list_images",
    "synthesize",
]
