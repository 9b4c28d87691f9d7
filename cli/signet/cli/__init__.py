"""The `signet` command line.

Quiet by default: a newcomer's terminal shows Signet's own output, not the libraries'
warnings (pyHanko imports DSA, which `cryptography` deprecates, and says so on every
run).  The filter is set here, in the package's first module, because those warnings
fire at import time, before any command runs; `--verbose` anywhere on the command line
keeps them (`signet.cli.main.main` removes the flag before Typer parses).  Only the
`signet` command itself is quietened: importing this package elsewhere (tests) changes
nothing.

`signet verify-evidence` is run by people outside the appliance: here, before
`signet.cli.main` imports every component, it runs alone (`signet.cli.verify_commands`),
in about a second instead of the whole CLI's several.
"""

import logging
import sys
import warnings
from pathlib import Path

VERBOSE = "--verbose" in sys.argv[1:]

#: `python -m signet.cli`: while this package is imported, sys.argv[0] is still "-m".
_AS_MODULE = sys.orig_argv[1:3] == ["-m", "signet.cli"]

if not VERBOSE and (_AS_MODULE or Path(sys.argv[0]).name in {"signet", "__main__.py"}):
    warnings.simplefilter("ignore")
    # pyHanko logs a foreign signature's failed path building with a traceback; the
    # verdict is in the report, so the log is for --verbose only.
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

if Path(sys.argv[0]).name in {"signet", "__main__.py"} and sys.argv[1:2] == ["verify-evidence"]:
    from signet.cli.verify_commands import run_alone

    run_alone()
