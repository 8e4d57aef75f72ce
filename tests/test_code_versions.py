"""Each rule's code version: the package modules its stage function can import, derived
from the import statements (dimcollapse.code_versions), checked on a small package and
against an independent walk of the real one."""

from __future__ import annotations

import ast
import dis
import importlib
import inspect
import modulefinder
import textwrap
import types
from pathlib import Path

import pytest

from dimcollapse import code_versions as cv

REPO = Path(__file__).resolve().parents[1]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "dimcollapse"


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """dimcollapse/{a, b, c, sub/d} and two stage modules, with top-level, function-level,
    relative and from-imports of modules and of names."""
    return _write(tmp_path, {
        "dimcollapse/__init__.py": "",
        "dimcollapse/a.py": "X = 1\n",
        "dimcollapse/b.py": "def f():\n    from dimcollapse import a\n    return a.X\n",
        "dimcollapse/c.py": "from .sub.d import Y\n",
        "dimcollapse/sub/__init__.py": "",
        "dimcollapse/sub/d.py": "Y = 2\n",
        "dimcollapse/e.py": "E = 3\n",
        "dimcollapse/stages/__init__.py": "",
        "dimcollapse/stages/common.py": """
            import logging

            def start(smk):
                return logging.getLogger()

            def draw():
                from dimcollapse.e import E
            """,
        "dimcollapse/stages/one.py": """
            import numpy
            from dimcollapse.stages.common import draw, start

            def _helper():
                from dimcollapse.c import Y
                return Y

            def _unused():
                import dimcollapse.e

            def first(smk):
                from dimcollapse import b
                start(smk)
                return b.f() + _helper()

            def second(smk):
                draw = 0  # a local name that is also a helper's: not a call of it
                return draw

            def fourth(smk):
                return draw()
            """,
        "dimcollapse/stages/two.py": "def third(smk):\n    from dimcollapse.e import E\n",
    })


def _names(function: str, root: Path) -> set[str]:
    return {m.removeprefix("dimcollapse").lstrip(".") or "<init>" for m in cv.stage_modules(function, root)}


def test_a_stage_function_reaches_what_it_imports_transitively(package: Path) -> None:
    stage = {"<init>", "stages", "stages.common", "stages.one"}
    # b inside the function, a inside b's function, c through a helper, sub.d relatively from c
    assert _names("first", package) == stage | {"b", "a", "c", "sub", "sub.d"}
    # only the stage module's top level: not what other functions of the module import, nor
    # what a helper of stages.common that it does not call imports
    assert _names("second", package) == stage
    assert _names("fourth", package) == stage | {"e"}  # that helper, called
    assert _names("third", package) == {"<init>", "stages", "stages.two", "e"}


def test_code_version_changes_with_exactly_the_modules_reached(package: Path) -> None:
    before = {f: cv.stage_code(f, package) for f in ("first", "second", "third")}
    cv._parse.cache_clear()
    cv.module_imports.cache_clear()
    (package / "sub" / "d.py").write_text("Y = 3\n")
    after = {f: cv.stage_code(f, package) for f in ("first", "second", "third")}
    cv._parse.cache_clear()
    cv.module_imports.cache_clear()
    assert after["first"] != before["first"]
    assert after["second"] == before["second"] and after["third"] == before["third"]


def test_a_rule_without_a_stage_function_is_an_error(package: Path) -> None:
    with pytest.raises(cv.StageNotFound, match="'fifth' is defined in no stage module"):
        cv.stage_modules("fifth", package)


# ------------------------------------------------------------------ the real package
def _rules() -> dict[str, str]:
    """Rule name -> the stage function its script calls (``from dimcollapse.stages import <module>``,
    then ``<module>.<function>(snakemake)``)."""
    found = {}
    for script in sorted((REPO / "scripts").glob("*.py")):
        tree = ast.parse(script.read_text())
        modules = {alias.asname or alias.name for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.module == "dimcollapse.stages" for alias in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in modules):
                found[script.stem] = f"{node.func.value.id}.{node.func.attr}"
    return found


def test_every_rule_script_calls_the_stage_function_of_its_name() -> None:
    rules = _rules()
    assert len(rules) == len(list((REPO / "scripts").glob("*.py")))
    for rule, target in rules.items():
        module, function = target.split(".")
        assert function == rule
        assert cv.stage_module(rule) == f"dimcollapse.stages.{module}"


def _code_imports(code: types.CodeType) -> set[str]:
    """Modules named by IMPORT_NAME in compiled code and every nested function (bytecode, not the AST)."""
    found = set()
    instructions = list(dis.get_instructions(code))
    for i, ins in enumerate(instructions):
        if ins.opname == "IMPORT_NAME":
            fromlist = instructions[i - 1].argval if i else None
            found.add(ins.argval)
            found.update(f"{ins.argval}.{name}" for name in (fromlist or ()) if name != "*")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _code_imports(const)
    return found


def _globals_loaded(code: types.CodeType) -> set[str]:
    """Global names the code (and nested functions) reads: the module's helpers it calls."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _globals_loaded(const)
    return names


def _independent_walk(rule: str) -> set[str]:
    """What the stage function of ``rule`` can import, found by Python's own ``modulefinder``
    (bytecode scan) from the imports the compiled function and its module's top level execute."""
    return _walk_functions(cv.stage_module(rule), {rule})


def _walk_functions(module_name: str, names: set[str]) -> set[str]:
    """The functions ``names`` of a stage module, the module's functions they load, the
    helpers they take from other stage modules (function by function), and ``modulefinder``'s
    closure of every other import: from compiled code, not from the source's syntax tree."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    helpers = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    seen, todo, starts, loaded = set(), [n for n in names if n in helpers], set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        fn = getattr(module, name)
        for code in {fn.__code__, inspect.unwrap(fn).__code__}:  # a decorated stage: its wrapper too
            starts |= _code_imports(code)
            loaded |= _globals_loaded(code)
        if fn.__closure__:  # the decorator's own function, a helper of the module
            loaded |= {c.cell_contents.__name__ for c in fn.__closure__ if callable(c.cell_contents)}
        todo += [n for n in loaded if n in helpers]
    found = {module_name}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            continue
        if (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dimcollapse.stages.")
                and node.module != module_name):
            found |= _walk_functions(node.module, {a.name for a in node.names if (a.asname or a.name) in loaded})
        else:
            starts |= _code_imports(compile(ast.Module([node], []), module_name, "exec"))
    finder = modulefinder.ModuleFinder(path=[str(REPO)])
    finder.import_hook(module_name.rpartition(".")[0])  # the packages above the stage module
    for name in sorted(starts - {module_name}):  # not the stage module: that scans all its functions
        if name.split(".")[0] == "dimcollapse":
            try:
                finder.import_hook(name)
            except ImportError:
                continue  # ``from pkg import name`` of a non-module name: pkg itself was found
    return found | {m for m in finder.modules if m.split(".")[0] == "dimcollapse"}


@pytest.mark.parametrize("rule", sorted(_rules()))
def test_derived_modules_match_an_independent_import_walk(rule: str) -> None:
    assert cv.stage_modules(rule) == _independent_walk(rule)


def test_package_modules_import_names_from_their_defining_module() -> None:
    """dimcollapse.models re-exports some names lazily (importlib) for users; the package's
    own code imports them from where they are defined, so the import walk sees the module."""
    models = importlib.import_module("dimcollapse.models")
    lazy = set(models._LAZY)
    for path in (REPO / "dimcollapse").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "dimcollapse.models":
                named = {a.name for a in node.names} & lazy
                assert not named, f"{path}: imports {sorted(named)} from dimcollapse.models, not their module"
