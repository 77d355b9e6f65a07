"""Command-line tools. Each module defines ``main(argv=None) -> int``.

Shared behaviour: user errors (:class:`GooseError`) and bad options print one
line on stderr and exit with code 2; no traceback is shown for them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from goose_neuro.errors import GooseError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def make_parser(prog: str, description: str) -> OneLineParser:
    return OneLineParser(prog=prog, description=description,
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def finish_check(prog: str, rep: dict, as_json: bool, show: Callable[[dict], None],
                 failure_line: Callable[[dict], str]) -> int:
    """Shared ending of the ``goose-check`` subcommands: print the report (one JSON object with
    ``--json``, else ``show``), then exit 0 when it passed or 1 with the failing numbers."""
    import json

    if as_json:
        sys.stdout.write(json.dumps(rep, sort_keys=True, default=str) + "\n")
    else:
        show(rep)
    if not rep["passed"]:
        sys.stderr.write(f"{prog}: FAILED: {failure_line(rep)}\n")
        return 1
    return 0


def run_cli(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``body(argv)``; turn user errors into one stderr line and exit code 2."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(body(argv) or 0)
    except GooseError as e:
        msg = " ".join(str(e).split())
        sys.stderr.write(f"{prog}: error: {msg}\n")
        return 2
    except OSError as e:  # a file the OS refused (permissions, full disk, read-only filesystem)
        msg = " ".join(str(e).split())
        sys.stderr.write(f"{prog}: error: {msg}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
