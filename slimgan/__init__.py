"""slimgan's neutral core: the version, the user-facing errors, the generic registry and the CLI root.

Every other package (``distill``, ``export``, ``serve``, ``benchmarks``) may import this one; it imports
none of them, so the torch-free server stands on it without pulling in the distillation side.
"""

__version__ = "0.1.0"
