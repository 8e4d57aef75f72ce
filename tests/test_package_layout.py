"""The package is grouped by stage: one name per module, imports one way (no cycles)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dimcollapse

PACKAGE_DIR = Path(dimcollapse.__file__).parent


def _module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for file in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(file.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = file
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports, from every import statement (function-level ones too).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else
    ``pkg``. Implicit parent-package imports are not edges: a package's ``__init__`` may
    import its children.
    """
    modules = _module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, file in modules.items():
        is_package = file.name == "__init__.py"
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    child = f"{source}.{alias.name}"
                    targets.append(child if child in modules else source)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    assert "dimcollapse.data.clips" in graph and graph["dimcollapse.data.clips"], "the walk found no imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    """The walk must see function-level imports and report the cycle they close."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f():\n    from dimcollapse.data.clips import decode_row\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))


def test_every_module_has_one_name() -> None:
    """After importing every module, no module object is in ``sys.modules`` under two names."""
    for info in pkgutil.walk_packages(dimcollapse.__path__, "dimcollapse."):
        importlib.import_module(info.name)
    seen: dict[int, str] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("dimcollapse") and module is not None:
            assert id(module) not in seen, f"{name} and {seen[id(module)]} are one module"
            seen[id(module)] = name
            assert module.__name__ == name


@pytest.mark.parametrize("flat", ["video", "spectrum", "metrics", "clips", "probes", "download"])
def test_flat_alias_names_are_gone(flat: str) -> None:
    code = f"import dimcollapse.{flat}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr


def test_no_meta_path_finder_of_ours() -> None:
    assert not [f for f in sys.meta_path if type(f).__module__.startswith("dimcollapse")]



#: Stages whose jobs need torch: networks (extraction, probes, checkpoints), the clip
#: cache (it decodes videos in torch DataLoader workers) and spectra (the pairwise geometry
#: measures run torch's Gram-block kernels, on the CPU or a GPU; imported when they run).
_TORCH_STAGES = {"extract", "probe", "download_checkpoint", "clip_cache", "spectrum"}


def test_jobs_that_run_no_network_import_no_torch() -> None:
    """Every merge, metrics and figure job is a fresh process: importing torch
    there (seconds each) would be much of a small study's time. Imports every module each
    such stage function of dimcollapse.stages imports, in a clean interpreter."""
    trees = [ast.parse(path.read_text()) for path in sorted((PACKAGE_DIR / "stages").glob("*.py"))]
    modules = {
        node.module
        for tree in trees
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_") and fn.name not in _TORCH_STAGES
        for node in ast.walk(fn)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dimcollapse")
    }
    assert "dimcollapse.extraction.shards" in modules  # merge_features is among them
    code = f"import sys\nfor m in {sorted(modules)!r}: __import__(m)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


def test_starting_the_workflow_imports_no_torch(tmp_path: Path) -> None:
    """Snakemake's own process parses the Snakefile at every run and dry run, and on Slurm
    twice per job: torch there (1.7 s) was most of a no-op run's time."""
    repo = PACKAGE_DIR.parent
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules))\n"
        "from snakemake.cli import main\n"
        f"main(['--snakefile', {str(repo / 'Snakefile')!r}, '--directory', {str(tmp_path)!r},"
        f" '--configfile', {str(repo / 'config.demo.yaml')!r}, '--dry-run', '--cores', '1'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torch imported: False" in out.stdout, out.stdout[-3000:]


def test_the_glue_sits_on_top() -> None:
    """config, stages and cli are the workflow glue: no module of the stages they glue
    (data, models, extraction, analysis) imports them."""
    graph = import_graph()
    glue = ("dimcollapse.config", "dimcollapse.stages", "dimcollapse.cli")
    for module, imports in graph.items():
        if module.split(".")[1:2] and module.split(".")[1] in ("data", "models", "extraction", "analysis"):
            above = sorted(m for m in imports if m.startswith(glue))
            assert not above, f"{module} imports the workflow glue {above}"


def test_no_module_is_over_600_lines() -> None:
    """Modules that do one job stay small enough to read: split a module by job before it grows past this."""
    long = {name: n for name, file in _module_files().items() if (n := len(file.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"
