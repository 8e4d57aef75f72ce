"""Install requirements.lock and this package into the running virtual environment, fast.

``make`` runs it with the new venv's Python. pip spends most of a fresh install
unpacking the lock's few GB of wheels one after another; uv does the same install in
parallel and, on a second venv, from its cache. So this installs uv (one small wheel,
with pip) and lets uv install the lock; where uv cannot be had (no wheel reachable,
unsupported platform) it falls back to pip, with the same result.

uv does not read pip's configuration, and this machine's (like a company's) may name
mirrors, extra indexes, wheel folders and constraints. The sources uv gets are therefore
read at run time from pip's own effective configuration (``pip config list``: config
files and ``PIP_*`` variables), never written down here.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The uv release used for installs (a tool pin, not a dependency of the package).
UV_REQUIREMENT = "uv==0.13.8"

#: pip options that choose where packages come from -> uv's flag for each value.
_LIST_OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
    "trusted-host": "--allow-insecure-host",
}
#: pip's precedence: PIP_* variables over the ``install`` section over ``global``.
_SECTIONS = (":env:", "install", "global")


def parse_pip_config(listing: str) -> dict[str, str]:
    """Effective value of every pip option in ``pip config list`` output (``section.name='value'`` lines)."""
    found: dict[tuple[str, str], str] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        section, dot, name = key.rpartition(".")
        if sep and dot:
            found[(section, name)] = ast.literal_eval(value)
    names = {name for _, name in found}
    return {
        name: next(found[(s, name)] for s in _SECTIONS if (s, name) in found)
        for name in names
        if any((s, name) in found for s in _SECTIONS)
    }


def uv_arguments(pip_options: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv ``pip install`` flags and environment variables that give uv pip's package sources.

    ``--index-strategy unsafe-best-match`` keeps pip's rule (best version over all
    indexes) instead of uv's first-index-wins, so a pin found only on PyPI is still found
    when a local mirror lists older releases of the same package.
    """
    args = ["--index-strategy", "unsafe-best-match"]
    for name, flag in _LIST_OPTIONS.items():
        for value in pip_options.get(name, "").split():
            args += [flag, value]
    if pip_options.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    env = {"SSL_CERT_FILE": pip_options["cert"]} if pip_options.get("cert") else {}
    return args, env


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args]


def _uv() -> str | None:
    """uv beside this Python (installed here with pip when missing), else None."""
    here = Path(sys.executable).parent / "uv"
    if not here.exists():
        done = subprocess.run(_pip("install", "--quiet", UV_REQUIREMENT), check=False)
        if done.returncode != 0:
            return None
    return str(here) if here.exists() else shutil.which("uv")


def install(lock: Path, project: Path) -> None:
    """Install the lock's pins, then the project itself (editable, no dependencies)."""
    uv = _uv()
    if uv is None:
        print(f"install_lock: {UV_REQUIREMENT} unavailable, installing with pip", file=sys.stderr)
        subprocess.run(_pip("install", "--quiet", "-r", str(lock)), check=True)
        subprocess.run(_pip("install", "--quiet", "--no-deps", "-e", str(project)), check=True)
        return
    listing = subprocess.run(_pip("config", "list"), check=True, capture_output=True, text=True).stdout
    sources, env = uv_arguments(parse_pip_config(listing))
    # --compile-bytecode: pip writes .pyc files at install time, uv does not; where
    # PYTHONDONTWRITEBYTECODE is set (CI images often set it) every workflow job would then
    # recompile torch, pandas and matplotlib from source on import (2-3 s per process).
    command = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", sys.executable, *sources]
    environment = {**os.environ, **env}
    subprocess.run([*command, "-r", str(lock)], check=True, env=environment)
    subprocess.run([*command, "--no-deps", "-e", str(project)], check=True, env=environment)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path, help="pinned requirements file (requirements.lock)")
    parser.add_argument("--project", type=Path, default=Path("."), help="project folder installed editable")
    args = parser.parse_args(argv)
    install(args.lock, args.project)


if __name__ == "__main__":
    main()
