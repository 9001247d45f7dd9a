"""Metrics shared by training evaluation, export parity and the benchmarks.

- :mod:`distill.metrics.image` -- PSNR, SSIM, Variance of Laplacian (per-image, batch means).
- :mod:`distill.metrics.fid` -- FID / KID / IS and their formulas on features; needs the FID Inception
  weight file (:mod:`distill.metrics.inception`), else "unavailable".
- :mod:`distill.metrics.classifier` -- ``fid_classifier``: the Fréchet distance on the penultimate
  features of a small classifier trained on a labelled split (no downloaded weights needed).
- :mod:`distill.metrics.swd` -- multi-scale sliced Wasserstein distance on Laplacian-pyramid patches (ProGAN).
"""

from distill.metrics.classifier import (
    ClassifierConfig,
    FeatureClassifier,
    TrainedClassifier,
    classifier_accuracy,
    classifier_features,
    fid_classifier,
    fit_folder_classifier,
    load_classifier,
    load_labelled_folders,
    save_classifier,
    train_classifier,
)
from distill.metrics.fid import (
    compute_fid,
    compute_kid,
    fid_from_features,
    frechet_distance,
    inception_score,
    kid_from_features,
)
from distill.metrics.image import psnr, ssim, ssim_map, variance_of_laplacian
from distill.metrics.swd import sliced_wasserstein_distance

__all__ = [
    "ClassifierConfig",
    "FeatureClassifier",
    "TrainedClassifier",
    "classifier_accuracy",
    "classifier_features",
    "compute_fid",
    "compute_kid",
    "fid_classifier",
    "fid_from_features",
    "fit_folder_classifier",
    "frechet_distance",
    "inception_score",
    "kid_from_features",
    "load_classifier",
    "load_labelled_folders",
    "psnr",
    "save_classifier",
    "sliced_wasserstein_distance",
    "ssim",
    "ssim_map",
    "train_classifier",
    "variance_of_laplacian",
]
