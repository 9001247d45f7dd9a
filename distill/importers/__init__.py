"""Import of reference ``.pth`` files: reading what people save, inferring the architecture, converting.

- :mod:`distill.importers.reader`: load a file (weights only, on the CPU) and find its tensor dicts;
- :mod:`distill.importers.infer`: which registered architecture, at which widths, a state dict is;
- :mod:`distill.importers.structural`: a known family saved under other module names;
- :mod:`distill.importers.reference`: ``slimgan import`` itself.
"""

from distill.importers.infer import Inferred, infer_architecture, infer_candidates
from distill.importers.reference import default_role, find_model, import_reference

__all__ = ["Inferred", "default_role", "find_model", "import_reference", "infer_architecture", "infer_candidates"]
