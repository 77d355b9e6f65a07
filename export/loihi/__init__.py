"""Loihi / Loihi 2: packages built from the placement of the deployment IR, and their Lava check.

``export_loihi(graph, out_dir, target)`` writes a package (:mod:`.package`); ``load_package``
reads and validates one; :mod:`.host` is the host CPU's part; :mod:`.runner` runs a package in
Lava (in the Python 3.10 Lava environment); :mod:`.check` is ``goose-check lava``.
"""

from goose_neuro.export.loihi.package import (MANIFEST_FORMAT, MANIFEST_VERSION, Package, export_loihi,
                                              load_package, quantize, target_formats)
from goose_neuro.export.placement import TARGETS

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "Package", "TARGETS", "export_loihi", "load_package", "quantize",
           "target_formats"]
