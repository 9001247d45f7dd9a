"""The user-facing errors, re-exported from the neutral :mod:`slimgan.errors` so that distill code keeps
its short import path while the torch-free server depends on ``slimgan`` alone."""

from slimgan.errors import (  # noqa: F401
    CheckpointError,
    ConfigError,
    DatasetError,
    MissingDependencyError,
    SlimganError,
)
