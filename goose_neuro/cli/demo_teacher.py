"""``python -m goose_neuro.cli.demo_teacher``: build (or show) the cached demo teacher.

    python -m goose_neuro.cli.demo_teacher [--dir DIR] [--budget S] [--force] [--threads N]

Prints progress lines and, last, the teacher's directory (see :mod:`goose_neuro.demo_teacher`).
"""

from __future__ import annotations

import sys
from typing import Sequence

from goose_neuro.cli import make_parser, run_cli

PROG = "python -m goose_neuro.cli.demo_teacher"


def _body(argv: Sequence[str] | None) -> int:
    from goose_neuro import demo_teacher as dt
    from goose_neuro.training.distributed import pick_threads, set_threads

    p = make_parser(PROG, f"Build the cached {dt.LABEL} (GPT-2 trained on standard-library docstrings).")
    p.add_argument("--dir", default=None, help=f"cache directory (default {dt.default_dir()})")
    p.add_argument("--budget", type=float, default=dt.DemoTeacherSpec.budget_s, help="training seconds")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid one is cached")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: by machine load)")
    a = p.parse_args(argv)
    set_threads(a.threads or pick_threads())
    d = dt.ensure_demo_teacher(a.dir, dt.DemoTeacherSpec(budget_s=a.budget), force=a.force,
                               log=lambda m: print(m, flush=True))
    sys.stdout.write(f"{d}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
