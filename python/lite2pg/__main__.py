"""``python -m lite2pg …`` runs the lite2pg command line, for environments whose scripts directory is not on PATH."""

import os
import sys

from ._binary import find_binary

if __name__ == "__main__":
    binary = find_binary()
    if os.name == "nt":
        import subprocess

        sys.exit(subprocess.call([binary, *sys.argv[1:]]))
    os.execv(binary, [binary, *sys.argv[1:]])
