"""The built-in model zoo. Importing this package registers every architecture in it.

To add an architecture, drop one file into this folder with a ``@register_model`` constructor: every
module here is imported on first use of the registry, so nothing else needs editing.
"""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
