"""Packaging: build a wheel, install it into a fresh virtual environment, run its console scripts.

The wheel is built from a copy of the sources (the source tree is never written to)
with the build backend already installed (no network). The new environment reuses the
heavy dependencies of the running one through a ``.pth`` line, which adds them as a plain
path: the running environment's own ``.pth`` hooks (such as an editable install of
goose-neuro) are not executed, so only the installed wheel provides ``goose_neuro``.
Commands run from a directory outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("goose-train", "goose-eval", "goose-export", "goose-check", "goose-generate", "goose-energy",
           "goose-demo")
SKIP_NAMES = {".git", ".venv", ".venv-lava", "runs", "out", "build", "dist", "tests", "benchmarks", ".ci",
              "__pycache__", ".pytest_cache", ".hypothesis", ".cache"}

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _copy_sources(dst: Path) -> Path:
    def ignore(_d: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP_NAMES or n.endswith((".egg-info", ".pyc"))}

    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


def _build_wheel(src: Path, dist: Path) -> Path:
    try:
        import build  # noqa: F401

        cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
               "--outdir", dist, src]
    except ImportError:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "-w", dist, src]
    _run(cmd, cwd=src)
    wheels = sorted(dist.glob("goose_neuro-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_env(root: Path) -> tuple[Path, Path]:
    """A venv (no pip of its own) that sees the running environment's packages as a plain path."""
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip())
    (site / "_goose_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return py, site


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    whl = _build_wheel(_copy_sources(root / "src"), root / "dist")
    py, site = _fresh_env(root)
    _run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q", whl], cwd=root)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{py.parent}{os.pathsep}{env.get('PATH', '')}")
    work = root / "work"
    work.mkdir()
    return {"whl": whl, "py": py, "site": site, "bin": py.parent, "env": env, "work": work}


def test_wheel_contents(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["whl"]).namelist())
    profiles = sorted(p.name for p in (REPO / "hardware_profiles").glob("*.yaml"))
    assert profiles and all(f"goose_neuro/hardware_profiles/{n}" in names for n in profiles)
    assert "goose_neuro/export/lower.py" in names and "goose_neuro/energy/api.py" in names
    assert "goose_neuro/hardware_profiles/schema.py" in names  # the loader ships with its data
    assert "goose_neuro/energy/calibration_data/blouw2019_kws.yaml" in names
    assert "goose_neuro/training/loop.py" in names and "goose_neuro/tokenizer.py" in names
    assert "goose_neuro/export/loihi/runner.py" in names and "goose_neuro/export/loihi/host.py" in names
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"export", "energy", "hardware_profiles", "tests"}  # nothing generic at top level


def test_installed_package_is_the_wheel(installed):
    code = ("import goose_neuro, goose_neuro.hardware_profiles as p, json; "
            "print(json.dumps([goose_neuro.__file__, sorted(p.builtin_profiles())]))")
    out = _run([installed["py"], "-c", code], cwd=installed["work"], env=installed["env"]).stdout
    path, profiles = json.loads(out.strip().splitlines()[-1])
    assert Path(path).resolve().is_relative_to(installed["site"].resolve())
    assert sorted(profiles) == sorted(p.stem for p in (REPO / "hardware_profiles").glob("*.yaml"))
    for s in SCRIPTS:
        assert (installed["bin"] / s).is_file(), s


def test_console_scripts_run(installed):
    env, work, b = installed["env"], installed["work"], installed["bin"]
    out = _run([b / "goose-energy", "--help"], cwd=work, env=env).stdout
    assert "--profile" in out and "loihi2" in out
    assert "--quick" in _run([b / "goose-demo", "--help"], cwd=work, env=env).stdout
    assert "--pocl-taus" in _run([b / "goose-train", "--help"], cwd=work, env=env).stdout


def test_tiny_export_from_the_wheel(installed):
    env, work, b, py = installed["env"], installed["work"], installed["bin"], installed["py"]
    code = ("import torch; from goose_neuro import ASNNGoose, preset; "
            "from goose_neuro.checkpoint import save_checkpoint; torch.manual_seed(0); "
            "save_checkpoint(ASNNGoose(preset('tiny')), 'ckpt')")
    _run([py, "-c", code], cwd=work, env=env)
    _run([b / "goose-export", "--target", "onnx", "ckpt", "-o", "onnx"], cwd=work, env=env)
    side = json.loads((work / "onnx" / "model.json").read_text(encoding="utf-8"))
    assert (work / "onnx" / "model.onnx").stat().st_size > 10_000
    assert side["model_config"]["vocab_size"] == 256
    _run([b / "goose-export", "--target", "loihi2", "ckpt", "-o", "loihi2"], cwd=work, env=env)
    man = json.loads((work / "loihi2" / "manifest.json").read_text(encoding="utf-8"))
    assert man["target"] == "loihi2" and len(list((work / "loihi2" / "chains").glob("*.net"))) >= 1
