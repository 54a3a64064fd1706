"""The build backend: setuptools', with an editable install that a folder named `recurgen` cannot shadow.

setuptools installs an editable project of this layout (packages mapped from `templates/`, `specs/`, `grammar/`)
through an import finder that it appends to `sys.meta_path`, after Python's own path finder. Run from the clone's
parent folder, the clone itself (`./recurgen`, no `__init__.py`) is then found first, as an empty namespace package:
`import recurgen` succeeds and `recurgen.load` does not exist. Putting the editable finder first makes `recurgen`
always the installed project (tests/test_packaging.py). If a setuptools version writes its finder differently, the
editable install falls back to setuptools' `strict` mode (a link tree on sys.path: same robustness, but new files
need a re-install). Wheels and sdists are setuptools' own.
"""

from __future__ import annotations

from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks this module does not change)

_APPEND = "sys.meta_path.append(_EditableFinder)"
_FIRST = "sys.meta_path.insert(0, _EditableFinder)  # recurgen: before a same-named folder in the cwd"


def _finder_first() -> bool:
    """Make setuptools' editable finder template insert the finder first; False if the template is unknown."""
    try:
        from setuptools.command import editable_wheel
    except ImportError:
        return False
    template = getattr(editable_wheel, "_FINDER_TEMPLATE", None)
    if not isinstance(template, str) or template.count(_APPEND) != 1:
        return False
    editable_wheel._FINDER_TEMPLATE = template.replace(_APPEND, _FIRST)
    return True


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    settings = dict(config_settings or {})
    if "editable_mode" not in settings and "editable-mode" not in settings and not _finder_first():
        settings["editable_mode"] = "strict"
    return _setuptools.build_editable(wheel_directory, settings, metadata_directory)
