"""Which package code a workflow rule runs, read from the import statements.

Snakemake reruns a job when its params change, but it does not look at the modules a
rule's script imports. Every rule therefore carries a ``code`` param: a digest of the
source of every package module its stage function can import. The list is derived,
never written by hand, so it cannot drift from the code: a rule's modules are

* the stage module that defines its function (``dimcollapse.stages.<file>``, whole:
  helpers and constants of that module count for each of its rules),
* every ``dimcollapse`` module imported at that module's top level or inside the
  function (and inside the module's own helpers that the function uses); helpers taken
  from another stage module (``stages.common``) count with what they import, helper by
  helper, so a helper that draws figures adds the figure code to the figure rules only,
* and, transitively, everything those modules import anywhere — at the top or inside a
  function, since a function-level import runs whenever that function is called. The
  ``__init__`` of every package on the way is included too: importing a module runs it.

The package's own modules import each name from the module that defines it (a test
checks this), so the lazy re-exports of ``dimcollapse.models`` (``importlib`` calls for
users' convenience) hide nothing from this walk.

Extraction is deliberately *not* keyed this way: its numbers are versioned by
``NUMERICS_VERSION`` (``dimcollapse/extraction/numerics.py``) and its clips live in the
feature store keyed by that version, so a refactoring of the model code reruns no GPU job
(see the ``extract`` rule).

This module imports nothing of ours and no third-party package: the workflow computes
these digests every time it starts.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "dimcollapse"
#: Where the package's sources are; the digests are of these files' bytes.
ROOT = Path(__file__).resolve().parent
#: The package that holds one function per workflow rule.
STAGES = f"{PACKAGE}.stages"


class StageNotFound(LookupError):
    """No stage module defines a function of the rule's name."""


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of package module ``name`` (``dimcollapse.a.b``), or ``None``."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(name: str, root: Path) -> bool:
    file = module_file(name, root)
    return file is not None and file.name == "__init__.py"


def _parents(name: str) -> list[str]:
    """``dimcollapse.a.b`` -> ``dimcollapse``, ``dimcollapse.a`` (their ``__init__`` runs on import)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(nodes: Iterable[ast.AST], module: str, root: Path = ROOT) -> set[str]:
    """Package modules named by the import statements anywhere inside ``nodes``.

    ``from pkg import name`` counts ``pkg.name`` when that is a module of ours, else
    ``pkg`` (the name is defined there). Relative imports are resolved against
    ``module``. Modules outside the package are ignored.
    """
    package = module if _is_package(module, root) else module.rpartition(".")[0]
    found: set[str] = set()
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if module_file(sub, root) is not None else base)
    ours = {name for name in found if module_file(name, root) is not None}
    return ours | {p for name in ours for p in _parents(name)}


@functools.cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_bytes(), filename=str(path))


@functools.cache  # every rule's stage_code walks the same modules, at each start of Snakemake
def module_imports(name: str, root: Path = ROOT) -> frozenset[str]:
    """Package modules that module ``name`` imports anywhere in its source."""
    file = module_file(name, root)
    if file is None:
        raise ModuleNotFoundError(f"{name}: not a module of {root}")
    return frozenset(imported_modules([_parse(file)], name, root) - {name})


def closure(names: Iterable[str], root: Path = ROOT) -> set[str]:
    """``names`` and every package module they import, transitively."""
    seen: set[str] = set()
    todo = [n for name in names for n in (*_parents(name), name)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(module_imports(name, root) - seen)
    return seen


def stage_module(function: str, root: Path = ROOT) -> str:
    """The stage module (``dimcollapse.stages.<file>``) that defines ``function``."""
    stages = module_file(STAGES, root)
    if stages is None:
        raise StageNotFound(f"{root}: has no {STAGES} package")
    found = [
        f"{STAGES}.{path.stem}"
        for path in sorted(stages.parent.glob("*.py"))
        if path.stem != "__init__" and _top_level_function(_parse(path), function) is not None
    ]
    if len(found) != 1:
        where = f"in {', '.join(found)}" if found else "in no stage module"
        raise StageNotFound(f"stage function {function!r} is defined {where} of {stages.parent}")
    return found[0]


def _top_level_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def stage_modules(function: str, root: Path = ROOT) -> set[str]:
    """Every package module the stage function ``function`` can import (see module docstring)."""
    return _functions_reach(stage_module(function, root), {function}, root)


def _functions_reach(module: str, names: set[str], root: Path) -> set[str]:
    """What the functions ``names`` of the stage-package module ``module`` can import.

    The module itself (and its packages), what its top level and those functions (with
    the module's own functions they call) import, and — function by function again — the
    helpers they take from other modules of the stage package (``stages.common``), so that
    a helper used by some stages adds its imports to those stages only.
    """
    file = module_file(module, root)
    if file is None:
        raise ModuleNotFoundError(f"{module}: not a module of {root}")
    tree = _parse(file)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    used: dict[str, ast.FunctionDef] = {}
    todo = [n for n in names if n in functions]
    while todo:  # the functions, and the module's own functions they name (decorators included)
        name = todo.pop()
        if name not in used:
            used[name] = functions[name]
            todo.extend(n for n in _global_names(functions[name]) if n in functions)
    read = set().union(*map(_global_names, used.values()))
    reached = {module, *_parents(module)}
    plain: list[ast.AST] = [*used.values()]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        source = _stage_source(node, module, root)
        if source is None or not isinstance(node, ast.ImportFrom):  # (a stage source is an import-from)
            plain.append(node)
        else:  # ``from dimcollapse.stages.<m> import a, b``: follow the names these functions read
            taken = {alias.name for alias in node.names if (alias.asname or alias.name) in read}
            reached |= _functions_reach(source, taken, root)
    return reached | closure(imported_modules(plain, module, root) - {module}, root)


def _stage_source(node: ast.AST, module: str, root: Path) -> str | None:
    """The stage-package module a top-level ``from … import names`` takes functions from."""
    if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
        return None
    source = node.module
    if source == module or not source.startswith(f"{STAGES}.") or _is_package(source, root):
        return None
    return source if module_file(source, root) is not None else None


def _global_names(function: ast.FunctionDef) -> set[str]:
    """Names ``function`` reads that are not its own (parameters or assigned in it): the
    module-level functions it calls (a local variable may share a stage's name)."""
    local = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    local |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    read = {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    decorators = {n.id for d in function.decorator_list for n in ast.walk(d) if isinstance(n, ast.Name)}
    return (read - local) | decorators


def digest_files(paths: Iterable[Path], root: Path = ROOT, length: int = 12) -> str:
    """SHA-256 of the files' paths (relative to ``root``) and bytes, in path order."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:length]


def stage_code(function: str, root: Path = ROOT) -> str:
    """The code version of the rule whose stage function is ``function``."""
    files = [module_file(m, root) for m in stage_modules(function, root)]
    return digest_files([f for f in files if f is not None], root)
