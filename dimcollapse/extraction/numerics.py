"""The numerics version of feature extraction.

Features in the store (and the extract rule's outputs) are keyed by this number instead
of a hash of the source code: editing a docstring, a log line or the loader does not
recompute anything, while a change that alters the numbers of any clip must bump it.

Bump :data:`NUMERICS_VERSION` when a change to decoding, frame selection, scaling,
cropping, normalisation, model construction, weight loading or the forward pass changes
the features of a clip. ``tests/test_numerics_version.py`` pins the features of a small
seeded model on a real sample video and fails when they change while the version does
not (update the pinned values in the same commit as the bump).
"""

from __future__ import annotations

NUMERICS_VERSION = 2
