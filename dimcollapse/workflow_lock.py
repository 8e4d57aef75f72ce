"""Is a Snakemake run using a results folder right now? Read from Snakemake's own locks.

A running Snakemake locks every input and output file of its DAG in the persistence
folder of its working directory (``.snakemake/``), and removes the locks when it ends:

* file backend (the default): ``.snakemake/locks/<n>.input.lock`` and
  ``<n>.output.lock``, one path per line;
* ``--persistence-backend db`` (SQLite by default): rows of the ``snakemake_locks``
  table of ``.snakemake/metadata.db``, under the ``.snakemake`` folder's absolute path.

A run holds the folder when one of its locked paths lies inside it. This sees runs that
started on other machines too (Slurm jobs write to the shared folder through the run
that submitted them, which holds the locks), which a process list would not. A run that
was killed leaves its locks behind; ``snakemake --unlock`` removes them, as Snakemake
itself asks before it runs again.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from pathlib import Path

_LOCK_FILE = re.compile(r"\d+\.(input|output)\.lock")


def locks_holding(results: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> list[str]:
    """Where Snakemake's locks of ``workdir`` hold files under ``results`` (empty: none)."""
    persistence = Path(workdir).resolve() / ".snakemake"
    # Snakemake names the database's rows by the absolute path it was started in
    namespaces = {str(persistence), str(Path(workdir).absolute() / ".snakemake")}
    results = Path(results).resolve()
    found = []
    for lock_file in sorted((persistence / "locks").glob("*.lock")):
        if _LOCK_FILE.fullmatch(lock_file.name) and lock_file.is_file():
            try:
                paths = lock_file.read_text().splitlines()
            except FileNotFoundError:  # the run ended meanwhile
                continue
            if _inside(paths, results, persistence.parent):
                found.append(str(lock_file))
    database = persistence / "metadata.db"
    if database.is_file() and _inside(_database_locks(database, namespaces), results, persistence.parent):
        found.append(f"{database} (table snakemake_locks)")
    return found


def _database_locks(database: Path, namespaces: set[str]) -> list[str]:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT namespace, file_path FROM snakemake_locks").fetchall()
            return [path for namespace, path in rows if namespace in namespaces]
    except sqlite3.OperationalError:  # no lock table: no run has locked with this backend
        return []


def _inside(paths: list[str], folder: Path, workdir: Path) -> bool:
    for p in paths:
        p = p.strip()
        if p and (workdir / p).resolve().is_relative_to(folder):
            return True
    return False
