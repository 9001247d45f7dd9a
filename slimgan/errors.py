"""Errors a user can act on. The CLI prints them as one line and exits 2 (no traceback).

This module must stay free of torch imports: the server and the CLI entry point use it.
"""


class SlimganError(Exception):
    """A user-facing error: bad input, a missing file or dependency, a failed check."""

    exit_code = 2


class ConfigError(SlimganError):
    """A recipe or an argument that names an unknown key, a bad value or a missing file."""


class CheckpointError(SlimganError):
    """A checkpoint directory or reference file that cannot be read or does not match the architecture."""


class DatasetError(SlimganError):
    """A dataset folder or image that cannot be used."""


class MissingDependencyError(SlimganError):
    """An optional dependency (TensorRT, a GPU, tensorboard, ...) that the requested feature needs."""
