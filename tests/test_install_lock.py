"""tools/install_lock.py gives uv the package sources pip is configured with."""

from __future__ import annotations

import importlib.util

from workflow_helpers import REPO

_spec = importlib.util.spec_from_file_location("install_lock", REPO / "tools" / "install_lock.py")
install_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_lock)

LISTING = """\
:env:.find-links='/srv/wheels'
:env:.disable-pip-version-check='1'
global.cert='/etc/ssl/ca.pem'
global.constraint='/etc/pip/constraints.txt'
global.extra-index-url='file:///mirror/a/simple file:///mirror/b/simple'
global.find-links='/ignored/because/env/wins'
global.index-url='https://global.example/simple'
install.index-url='https://install.example/simple'
"""


def test_precedence_is_env_then_install_then_global() -> None:
    options = install_lock.parse_pip_config(LISTING)
    assert options["find-links"] == "/srv/wheels"
    assert options["index-url"] == "https://install.example/simple"
    assert options["constraint"] == "/etc/pip/constraints.txt"


def test_uv_gets_every_source_and_pips_version_rule() -> None:
    args, env = install_lock.uv_arguments(install_lock.parse_pip_config(LISTING))
    pairs = list(zip(args[::2], args[1::2]))
    assert pairs == [
        ("--index-strategy", "unsafe-best-match"),
        ("--index-url", "https://install.example/simple"),
        ("--extra-index-url", "file:///mirror/a/simple"),
        ("--extra-index-url", "file:///mirror/b/simple"),
        ("--find-links", "/srv/wheels"),
        ("--constraint", "/etc/pip/constraints.txt"),
    ]
    assert env == {"SSL_CERT_FILE": "/etc/ssl/ca.pem"}


def test_no_index_and_an_empty_config() -> None:
    args, env = install_lock.uv_arguments(install_lock.parse_pip_config(":env:.no-index='true'\n"))
    assert args == ["--index-strategy", "unsafe-best-match", "--no-index"] and env == {}
    assert install_lock.parse_pip_config("") == {}
