"""scripts/make_lava_env.py: --if-possible without Python 3.10, idempotent stamp."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import make_lava_env  # noqa: E402


def test_if_possible_without_python310(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(make_lava_env, "find_python310", lambda: None)
    assert make_lava_env.main(["--venv", str(tmp_path / "v"), "--if-possible"]) == 0
    assert "no Python 3.10 found" in capsys.readouterr().out
    assert make_lava_env.main(["--venv", str(tmp_path / "v")]) == 2
    assert not (tmp_path / "v").exists()


def test_stamp_detects_stale_env(tmp_path):
    venv = tmp_path / "v"
    venv.mkdir()
    assert not make_lava_env.is_ready(venv)  # no stamp
    (venv / make_lava_env.STAMP_NAME).write_text('{"lava": ["lava-nc==0.9"]}')
    assert not make_lava_env.is_ready(venv)  # pinned set changed


@pytest.mark.lava
def test_env_is_made_once_and_then_ready(tmp_path_factory):
    """make_lava_env makes a working environment, and a second run is a no-op (the stamp). The
    environment is made in a temporary directory: tests never write into the source tree."""
    if make_lava_env.find_python310() is None:
        pytest.skip("no Python 3.10: a Lava environment cannot exist here")
    from goose_neuro.export.loihi.check import lava_python

    py = lava_python()
    venv = py.parents[1] if py is not None else tmp_path_factory.mktemp("lava") / "venv"
    if py is None:
        assert make_lava_env.main(["--venv", str(venv)]) == 0
    assert make_lava_env.is_ready(venv)
    assert make_lava_env.main(["--venv", str(venv)]) == 0  # a no-op now
    assert make_lava_env.is_ready(venv)
