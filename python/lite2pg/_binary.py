"""Finds the ``lite2pg`` binary that the wheel installed beside this package."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from ._errors import SyncError

EXE = "lite2pg" + (sysconfig.get_config_var("EXE") or "")


def find_binary() -> str:
    """The path of the ``lite2pg`` binary to run.

    ``LITE2PG_BIN`` wins when set. Otherwise the scripts directory of this Python environment (where ``pip``
    puts the wheel's binary, also inside a virtual environment that is not activated), then the user scheme's
    (``pip install --user``), then ``bin/`` beside the package (``pip install --target``), then ``PATH``.
    """
    override = os.environ.get("LITE2PG_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise SyncError(f"LITE2PG_BIN={override} is not an executable file; point it at the lite2pg binary")
        return override
    for candidate in _installed_locations():
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(EXE)
    if found:
        return found
    raise SyncError(
        "the lite2pg binary was not found in this Python environment's scripts directory nor on PATH; "
        "reinstall with `pip install lite2pg`, or set LITE2PG_BIN to its path"
    )


def _installed_locations() -> list[str]:
    places = [sysconfig.get_path("scripts")]
    user_scheme = "nt_user" if os.name == "nt" else ("osx_framework_user" if sys.platform == "darwin" else "posix_user")
    try:
        places.append(sysconfig.get_path("scripts", scheme=user_scheme))
    except KeyError:
        pass
    places.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin"))
    return [os.path.join(place, EXE) for place in places if place]
