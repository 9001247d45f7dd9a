"""Compatibility import: :class:`StepContext` lives beside the losses that read it (:mod:`distill.losses.context`)."""

from distill.losses.context import StepContext  # noqa: F401
