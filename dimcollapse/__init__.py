"""dimcollapse: measure dimensional collapse in video representation models.

The package is grouped by pipeline stage — :mod:`dimcollapse.data` (datasets, manifest,
decoding, protocols, clip cache), :mod:`dimcollapse.models`, :mod:`dimcollapse.extraction`
and :mod:`dimcollapse.analysis` — with the workflow glue (``config``, ``stages``) and small
shared utilities at the top.

The stage modules are also importable under their short, flat names
(``dimcollapse.video``, ``dimcollapse.spectrum``, ``dimcollapse.metrics``, …): that is how
the README, the issues and users' notebooks name them, and it keeps their imports working
across the regrouping. ``import dimcollapse.video`` returns the very module object of
``dimcollapse.data.video`` (no copy, no second import).
"""

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

__version__ = "0.1.0"

#: Flat public name -> the module it stands for.
ALIASES = {
    **{m: f"dimcollapse.data.{m}" for m in ("datasets", "manifest", "probe", "video", "protocols", "clips", "demo")},
    **{m: f"dimcollapse.extraction.{m}" for m in ("extract", "shards", "features")},
    **{m: f"dimcollapse.analysis.{m}" for m in ("spectrum", "metrics", "figures")},
    "download": "dimcollapse.models.download",
    "probes": "dimcollapse.analysis.probes",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its real name; the import system has just overwritten
        # ``__spec__`` with the alias's, so give the module its own back (pickling,
        # multiprocessing and reload read it).
        module.__spec__ = self.real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``dimcollapse.<flat name>`` to the stage module named in :data:`ALIASES`."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        prefix, _, name = fullname.rpartition(".")
        if prefix != __name__ or name not in ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(ALIASES[name]))


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
