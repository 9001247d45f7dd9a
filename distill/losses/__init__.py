"""Loss terms for distillation and GAN training, each a registered :class:`LossTerm`.

Importing this package imports every module in ``distill/losses/``, so a new term is one file with
an ``@register_loss("name")`` class: nothing else is edited. See :mod:`distill.losses.base`.
"""

import importlib
import pkgutil

from distill.losses.base import LossTerm, build_loss, format_formula, list_losses, register_loss

__all__ = ["LossTerm", "build_loss", "format_formula", "list_losses", "register_loss"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")
