#!/usr/bin/env python3
"""Create the Python 3.10 environment that runs Lava (``.venv-lava``): one command.

lava-nc 0.10.0 and lava-dl 0.6.0 declare Python >=3.10,<3.11 and lava-dl pins
torch 2.3 (a multi-GB download that the Lava side of goose-neuro never uses).
So the environment is made from a Python 3.10 interpreter and the two packages
are installed with ``--no-deps`` next to the small pinned set they really need
(see docs/LOIHI_LAVA.md). The netx loader is then imported without torch by the
stand-in modules of ``goose_neuro.export.loihi.runner``.

Usage::

    python3 scripts/make_lava_env.py --venv .venv-lava            # make lava-env
    python3 scripts/make_lava_env.py --venv .venv-lava --if-possible  # make test

``--if-possible`` exits 0 with a message when no Python 3.10 exists. A stamp file
(``<venv>/.goose-lava-env``) holding the pinned set makes a second run a no-op.
Only the standard library is used, so any Python 3 can run this script.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

LAVA_PACKAGES = ["lava-nc==0.10.0", "lava-dl==0.6.0"]
DEPENDENCIES = [
    "numpy>=1.24.4,<2",
    "scipy>=1.10.1,<2",
    "h5py>=3.7,<4",
    "asteval>=0.9.31,<0.10",
    "networkx<=2.8.7",
    "scikit-learn>=1.5,<2",
]
STAMP_NAME = ".goose-lava-env"
CHECK_IMPORT = "import lava.magma.core.run_configs, lava.proc.lif.process, lava.proc.dense.process, h5py"


class EnvError(Exception):
    """The environment cannot be made (message says why)."""


def find_python310() -> str | None:
    """Path of a Python 3.10 interpreter: $GOOSE_PYTHON310, pyenv's 3.10.x, then PATH."""
    cands: list[str] = []
    if os.environ.get("GOOSE_PYTHON310"):
        cands.append(os.environ["GOOSE_PYTHON310"])
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            roots.insert(0, subprocess.run([pyenv, "root"], capture_output=True, text=True,
                                           timeout=20).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    for root in filter(None, roots):
        cands += sorted(glob.glob(os.path.join(root, "versions", "3.10.*", "bin", "python3.10")), reverse=True)
    for name in ("python3.10",):
        path = shutil.which(name)
        if path:
            cands.append(path)
    for c in cands:
        if _is_py310(c):
            return c
    return None


def _is_py310(exe: str) -> bool:
    try:
        out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def wanted_stamp() -> dict:
    return {"lava": LAVA_PACKAGES, "deps": DEPENDENCIES, "stamp_version": 1}


def is_ready(venv: Path) -> bool:
    """True when the stamp matches the pinned set and the interpreter still imports Lava."""
    stamp, py = venv / STAMP_NAME, venv / "bin" / "python"
    try:
        if json.loads(stamp.read_text()) != wanted_stamp():
            return False
    except (OSError, ValueError):
        return False
    return py.exists() and subprocess.run([str(py), "-c", CHECK_IMPORT], capture_output=True,
                                          timeout=120).returncode == 0


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise EnvError(f"`{' '.join(cmd[:6])} ...` failed: {' | '.join(tail)}")


def remove_stray_tests(py: Path) -> None:
    """lava-dl installs a top-level ``tests`` package; delete it so it shadows nothing."""
    out = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    stray = Path(out) / "tests"
    if stray.is_dir():
        shutil.rmtree(stray)


def build(venv: Path, python310: str) -> None:
    """Create ``venv`` with ``python310`` and install the pinned Lava set (no torch)."""
    if venv.exists():
        shutil.rmtree(venv)
    _run([python310, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run(pip + DEPENDENCIES)
    _run(pip + ["--no-deps"] + LAVA_PACKAGES)
    remove_stray_tests(py)
    if subprocess.run([str(py), "-c", CHECK_IMPORT], capture_output=True).returncode != 0:
        raise EnvError(f"{venv}: Lava installed but `{CHECK_IMPORT}` fails")
    (venv / STAMP_NAME).write_text(json.dumps(wanted_stamp()) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Create the Python 3.10 Lava environment (lava-nc + lava-dl, no torch).")
    ap.add_argument("--venv", default=".venv-lava", help="where to create it")
    ap.add_argument("--if-possible", action="store_true",
                    help="exit 0 with a message when no Python 3.10 exists")
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamp is current")
    args = ap.parse_args(argv)
    venv = Path(args.venv).absolute()
    if not args.force and is_ready(venv):
        print(f"make_lava_env: {venv} is ready (lava-nc 0.10.0, lava-dl 0.6.0)")
        return 0
    py310 = find_python310()
    if py310 is None:
        msg = ("make_lava_env: no Python 3.10 found (tried $GOOSE_PYTHON310, pyenv versions/3.10.*, "
               "python3.10 on PATH); Lava needs Python 3.10 (`pyenv install 3.10`)")
        if args.if_possible:
            print(msg + "; skipping, the Lava tests will be skipped")
            return 0
        sys.stderr.write(msg + "\n")
        return 2
    # built in place (a venv's scripts hard-code its path); the stamp, written last,
    # marks it complete, and a failed build is removed
    try:
        build(venv, py310)
    except (EnvError, OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(venv, ignore_errors=True)
        sys.stderr.write(f"make_lava_env: {e}\n")
        return 2
    print(f"make_lava_env: created {venv} with {py310}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
