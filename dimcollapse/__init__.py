"""dimcollapse: measure dimensional collapse in video representation models.

The package is grouped by pipeline stage, data flowing one way —
:mod:`dimcollapse.data` (datasets, manifest, decoding, protocols, clip cache) →
:mod:`dimcollapse.models` → :mod:`dimcollapse.extraction` → :mod:`dimcollapse.analysis` —
with the workflow glue (``config``, ``stages``, ``cli``) and small shared utilities
(``atomic``, ``diskspace``, ``failures``, ``logs``, ``provenance``) at the top. Every module
has one name, its place in that tree (``dimcollapse.data.video``, ``dimcollapse.analysis.spectrum``, …).
"""

__version__ = "0.1.0"
