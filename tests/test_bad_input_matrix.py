"""The bad-input matrix: every CLI x missing / empty / truncated / binary / wrong-version /
wrong-vocabulary inputs, unknown targets and profiles, unwritable outputs.

Each case must give exit code 2, exactly one line on stderr that names the actual fault (the
damaged file and what is wrong with it: each case carries a pattern the line must match), no
traceback, and leave no partial output (the output path does not exist afterwards, or a
pre-existing run directory is unchanged). Cases run in-process through each CLI's
``main(argv)``; a few also run as real subprocesses of the installed console scripts.
``test_matrix_summary`` prints the figure ``cases tried / cases clean``; run alone, it runs the
cases itself, so the figure always covers the whole matrix.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from _hostile_assets import assets, copy, run_cli

RESULTS: dict[str, bool] = {}
MESSAGES: dict[str, str] = {}  # case -> its stderr line (printed with GOOSE_MATRIX_VERBOSE=1)
BIN = Path(sys.executable).parent


@dataclass
class Case:
    """One bad invocation: CLI name, argv builder (gets the workspace), the pattern its one stderr
    line must match (it names the fault), output path to check."""

    cli: str
    kind: str
    argv: Callable[[dict], list[str]]
    expect: str  # regular expression searched in the stderr line
    keep: str = ""  # workspace key of a pre-existing directory that must be left unchanged
    id: str = field(default="")


@pytest.fixture(scope="module")
def A(tmp_path_factory):
    return assets(tmp_path_factory)


def _mains() -> dict[str, Callable]:
    from goose_neuro.cli import check, demo, energy, evaluate, export, generate, train

    return {"goose-train": train.main, "goose-eval": evaluate.main, "goose-export": export.main,
            "goose-check": check.main, "goose-generate": generate.main, "goose-energy": energy.main,
            "goose-demo": demo.main}


# -- damaged inputs (each builder returns a path inside the case's workspace) -----------------------
def bad_ckpt(w: dict, how: str) -> str:
    """A checkpoint directory damaged in one way."""
    d = w["tmp"] / f"ck_{how}"
    if how == "missing":
        return str(d)
    if how == "empty":
        d.mkdir()
        return str(d)
    copy(w["A"]["ck"], d)
    if how == "truncated":
        p = d / "model.safetensors"
        p.write_bytes(p.read_bytes()[:300])
    elif how == "binary":
        (d / "config.json").write_bytes(os.urandom(512))
    elif how == "version":
        cfg = json.loads((d / "config.json").read_text())
        cfg["format_version"] = 99
        (d / "config.json").write_text(json.dumps(cfg))
    elif how == "file":
        return str(d / "config.json")
    return str(d)


def bad_text(w: dict, how: str) -> str:
    p = w["tmp"] / f"text_{how}.txt"
    data = {"missing": None, "empty": b"", "binary": b"\x00\x01\x02garbage\xff" * 64,
            "truncated": "the prince said ".encode() * 20 + "\u20ac".encode()[:2]}[how]
    if data is not None:
        p.write_bytes(data)
    return str(p)


def bad_onnx(w: dict, how: str) -> str:
    d = w["tmp"] / f"onnx_{how}"
    if how == "missing":
        return str(d)
    if how == "empty":
        d.mkdir()
        return str(d)
    copy(w["A"]["onnx"], d)
    side = json.loads((d / "model.json").read_text())
    if how == "truncated":
        p = d / "model.onnx"
        p.write_bytes(p.read_bytes()[:1500])
    elif how == "binary":
        (d / "model.json").write_bytes(os.urandom(400))
    elif how == "version":
        side["version"] = 7
        (d / "model.json").write_text(json.dumps(side))
    elif how == "vocab":  # the step graph of a model with another vocabulary, under this sidecar
        copy(w["A"]["onnx_other_vocab"] / "model.onnx", d / "model.onnx.new").replace(d / "model.onnx")
    return str(d)


def bad_pkg(w: dict, how: str) -> str:
    d = w["tmp"] / f"pkg_{how}"
    if how == "missing":
        return str(d)
    if how == "empty":
        d.mkdir()
        return str(d)
    copy(w["A"]["loihi2"], d)
    if how == "truncated":
        p = d / "params.npz"
        p.write_bytes(p.read_bytes()[:1000])
    elif how == "binary":
        (d / "manifest.json").write_bytes(os.urandom(400))
    elif how == "version":
        m = json.loads((d / "manifest.json").read_text())
        m["format_version"] = 5
        (d / "manifest.json").write_text(json.dumps(m))
    elif how == "net":
        m = json.loads((d / "manifest.json").read_text())
        (d / m["chains"][0]["net_file"]).write_bytes(b"not hdf5")
    return str(d)


def bad_profile(w: dict, how: str) -> str:
    p = w["tmp"] / f"prof_{how}.yaml"
    from goose_neuro.hardware_profiles import _read_text

    good, _ = _read_text("loihi2")
    data = {"missing": None, "empty": "", "binary": None, "truncated": good[: len(good) // 3],
            "version": good.replace("schema_version: 1", "schema_version: 3")}[how]
    if how == "binary":
        p.write_bytes(os.urandom(300))
    elif data is not None:
        p.write_text(data)
    return str(p)


def teacher_dir(w: dict, how: str) -> str:
    d = w["tmp"] / f"teacher_{how}"
    if how == "missing":
        return str(d)
    if how == "empty":
        d.mkdir()
        return str(d)
    copy(w["A"]["teacher"], d)
    if how == "truncated":
        p = d / "model.safetensors"
        p.write_bytes(p.read_bytes()[:200])
    elif how == "binary":
        (d / "config.json").write_bytes(os.urandom(300))
    return str(d)


def unwritable(w: dict, how: str) -> str:
    if how == "under_file":
        f = w["tmp"] / "a_file"
        f.write_text("x")
        return str(f / "out")
    return "/sys/goose-neuro-test-out"  # refused even to root


def run_with_ckpt(w: dict, how: str) -> str:
    """A run directory whose only checkpoint is damaged (for goose-train --resume)."""
    run = w["tmp"] / "run"
    ck = run / "checkpoints" / "step_0000001"
    src = w["A"]["ck_other_vocab"] if how == "vocab" else w["A"]["ck"]
    copy(src, ck)
    st = ck / "training_state"
    st.mkdir()
    (st / "state.json").write_text("{}")
    (st / "state.safetensors").write_bytes(b"")
    if how == "version":
        cfg = json.loads((ck / "config.json").read_text())
        cfg["format_version"] = 2
        (ck / "config.json").write_text(json.dumps(cfg))
    elif how == "binary":
        (st / "state.json").write_bytes(os.urandom(200))
    w["run"] = run
    return str(run)


# -- the cases ----------------------------------------------------------------------------------
def _train(w, teacher=None, data=None, out=None, extra=()):
    return ["--teacher", teacher or str(w["A"]["teacher"]), "--data", data or str(w["A"]["text"]), "--preset", "tiny",
            "--out", out or w["out"], "--steps", "2", "--batch-size", "2", "--seq-len", "8", "--ce-only",
            "--threads", "1", "--cache-dir", str(w["tmp"] / "cache"), *extra]


def _eval(w, ck=None, data=None, extra=()):
    return ["--checkpoint", ck or str(w["A"]["ck"]), "--data", data or str(w["A"]["text"]), "--seq-len", "8",
            "--windows", "2", "--cache-dir", str(w["tmp"] / "cache"), *extra]


def _export(w, ck=None, target="onnx", out=None, extra=()):
    return [ck or str(w["A"]["ck"]), "--target", target, "-o", out or w["out"], *extra]


def _conx(w, d=None, ck=None, text=None, extra=()):
    return ["onnx", d or str(w["A"]["onnx"]), "--checkpoint", ck or str(w["A"]["ck"]), "--text",
            text or str(w["A"]["text"]), "--tokens", "2", "--max-eval-tokens", "8", *extra]


def _clava(w, pkg=None, ck=None, text=None, extra=()):
    return ["lava", pkg or str(w["A"]["loihi2"]), "--checkpoint", ck or str(w["A"]["ck"]), "--text",
            text or str(w["A"]["text"]), "--lava-tokens", "2", "--eval-tokens", "8",
            "--lava-python", "/bin/false", *extra]


def _gen(w, d=None, prompt="the prince", extra=()):
    return [d or str(w["A"]["onnx"]), "--prompt", prompt, "--tokens", "2", *extra]


def _energy(w, ck=None, text=None, prof=None, out=None, extra=()):
    return ["--checkpoint", ck or str(w["A"]["ck"]), "--text", text or str(w["A"]["text"]), "--tokens", "16",
            "--profile", prof or "loihi2", "-o", out or w["out"], "--no-plots", "--no-progress", *extra]


def _demo(w, out=None, extra=()):
    return ["--out", out or w["out"], "--quick", *extra]


DAMAGE = ("missing", "empty", "truncated", "binary", "version")
TEXT_DAMAGE = ("missing", "empty", "binary", "truncated")

# what the one line must say for each kind of damage (the damaged path, then the fault)
CKPT_FAULT = {"missing": r"ck_missing does not exist", "empty": r"ck_empty/config\.json: missing",
              "truncated": r"ck_truncated/model\.safetensors: unreadable or truncated",
              "binary": r"ck_binary/config\.json: not valid JSON",
              "version": r"ck_version/config\.json: format_version 99 is not supported",
              "file": r"ck_file/config\.json is not a directory"}
DATA_FAULT = {"missing": r"text_missing\.txt does not exist", "empty": r"text_empty\.txt holds no text",
              "binary": r"text_binary\.txt: looks binary", "truncated": r"text_truncated\.txt: not UTF-8"}
TEXT_FAULT = {**DATA_FAULT, "empty": r"text_empty\.txt is empty"}
TEACHER_FAULT = {"missing": r"teacher_missing does not exist", "empty": r"tokenizer of teacher '\S*teacher_empty'",
                 "truncated": r"teacher model '\S*teacher_truncated'",
                 "binary": r"tokenizer of teacher '\S*teacher_binary'"}
RESUME_FAULT = {"version": r"step_0000001/config\.json: format_version 2 is not supported",
                "vocab": r"step_0000001: model config differs",
                "binary": r"step_0000001/training_state: unreadable or damaged",
                "empty-state": r"step_0000001/training_state: unreadable or damaged"}
ONNX_FAULT = {"missing": r"onnx_missing does not exist", "empty": r"onnx_empty/model\.json: missing",
              "truncated": r"onnx_truncated/model\.onnx: ONNX Runtime cannot load it",
              "binary": r"onnx_binary/model\.json: not valid JSON",
              "version": r"onnx_version/model\.json: not a goose-neuro-onnx-step v1 sidecar",
              "vocab": r"onnx_vocab/model\.onnx does not match model\.json: output 'logits'"}
PKG_FAULT = {"missing": r"pkg_missing: not a Loihi package \(does not exist", "empty": r"pkg_empty: not a Loihi package "
             r"\(has no manifest\.json", "truncated": r"pkg_truncated: malformed Loihi package: params unreadable",
             "binary": r"pkg_binary: malformed Loihi package: manifest\.json unreadable",
             "version": r"pkg_version: malformed Loihi package: format_version 5",
             "net": r"pkg_net: malformed Loihi package: chains/\S+\.net: not a readable netx chain file"}
PROFILE_FAULT = {"missing": r"prof_missing\.yaml: file not found", "empty": r"prof_empty\.yaml: top level must be a mapping",
                 "truncated": r"prof_truncated\.yaml: not valid YAML", "binary": r"prof_binary\.yaml: unreadable",
                 "version": r"prof_version\.yaml: field 'schema_version': 3"}
UNWRITABLE_FAULT = {"under_file": r"a_file/out: \S*a_file is not a directory",
                    "sys": r"/sys/goose-neuro-test-out: /sys is not writable"}


def cases() -> list[Case]:
    c: list[Case] = []
    add = c.append
    # goose-train
    for h in TEXT_DAMAGE:
        add(Case("goose-train", f"data-{h}", lambda w, h=h: _train(w, data=bad_text(w, h)), DATA_FAULT[h]))
    for h in ("missing", "empty", "truncated", "binary"):
        add(Case("goose-train", f"teacher-{h}", lambda w, h=h: _train(w, teacher=teacher_dir(w, h)), TEACHER_FAULT[h]))
    for h in ("version", "vocab", "binary", "empty-state"):
        add(Case("goose-train", f"resume-{h}", lambda w, h=h: [*_train(w, out=run_with_ckpt(w, h)), "--resume"],
                 RESUME_FAULT[h], keep="run"))
    add(Case("goose-train", "unknown-preset", lambda w: _train(w, extra=["--preset", "enormous"]),
             r"unknown preset 'enormous'"))
    add(Case("goose-train", "unknown-kl", lambda w: _train(w, extra=["--kl", "sideways"]),
             r"--kl: invalid choice: 'sideways'"))
    add(Case("goose-train", "context-too-long", lambda w: _train(w, extra=["--seq-len", "4096"]),
             r"sequence length 4096 exceeds the teacher's context of 32"))
    for h in ("under_file", "sys"):
        add(Case("goose-train", f"unwritable-{h}", lambda w, h=h: _train(w, out=unwritable(w, h)), UNWRITABLE_FAULT[h]))
    # goose-eval
    for h in DAMAGE + ("file",):
        add(Case("goose-eval", f"ckpt-{h}", lambda w, h=h: _eval(w, ck=bad_ckpt(w, h)), CKPT_FAULT[h]))
    for h in TEXT_DAMAGE:
        add(Case("goose-eval", f"data-{h}", lambda w, h=h: _eval(w, data=bad_text(w, h)), DATA_FAULT[h]))
    add(Case("goose-eval", "wrong-vocab", lambda w: _eval(w, ck=str(w["A"]["ck_other_vocab"]),
                                                          extra=["--teacher", str(w["A"]["teacher"])]),
             r"student vocab_size \d+ != teacher '\S*teacher' vocab \d+"))
    add(Case("goose-eval", "teacher-missing", lambda w: _eval(w, extra=["--teacher", teacher_dir(w, "missing")]),
             TEACHER_FAULT["missing"]))
    # goose-export
    for t in ("onnx", "loihi2", "nir"):
        for h in DAMAGE:
            add(Case("goose-export", f"{t}-ckpt-{h}", lambda w, h=h, t=t: _export(w, ck=bad_ckpt(w, h), target=t),
                     CKPT_FAULT[h]))
    add(Case("goose-export", "unknown-target", lambda w: _export(w, target="truenorth"),
             r"--target: invalid choice: 'truenorth'"))
    add(Case("goose-export", "unknown-variant", lambda w: _export(w, extra=["--variant", "int4"]),
             r"--variant: invalid choice: 'int4'"))
    add(Case("goose-export", "loihi-unknown-opt", lambda w: _export(w, target="loihi2", extra=["--opt", "speed=9"]),
             r"unknown Loihi export option\(s\): speed"))
    add(Case("goose-export", "bad-opt-syntax", lambda w: _export(w, target="nir", extra=["--opt", "novalue"]),
             r"--opt 'novalue': expected KEY=VALUE"))
    for t in ("onnx", "loihi"):
        for h in ("under_file", "sys"):
            add(Case("goose-export", f"{t}-unwritable-{h}", lambda w, h=h, t=t: _export(w, target=t,
                                                                                        out=unwritable(w, h)),
                     UNWRITABLE_FAULT[h]))
    # goose-check onnx / lava
    for h in DAMAGE:
        add(Case("goose-check", f"onnx-dir-{h}", lambda w, h=h: _conx(w, d=bad_onnx(w, h)), ONNX_FAULT[h]))
        add(Case("goose-check", f"onnx-ckpt-{h}", lambda w, h=h: _conx(w, ck=bad_ckpt(w, h)), CKPT_FAULT[h]))
    for h in TEXT_DAMAGE:
        add(Case("goose-check", f"onnx-text-{h}", lambda w, h=h: _conx(w, text=bad_text(w, h)), TEXT_FAULT[h]))
    add(Case("goose-check", "onnx-wrong-vocab", lambda w: _conx(w, ck=str(w["A"]["ck_other_vocab"])),
             r"onnx was exported from a different model config than checkpoint \S*ck_other_vocab"))
    add(Case("goose-check", "onnx-graph-wrong-vocab", lambda w: _conx(w, d=bad_onnx(w, "vocab")), ONNX_FAULT["vocab"]))
    add(Case("goose-check", "unknown-subcommand", lambda w: ["truenorth", str(w["A"]["onnx"])],
             r"invalid choice: 'truenorth'"))
    for h in DAMAGE + ("net",):
        add(Case("goose-check", f"lava-pkg-{h}", lambda w, h=h: _clava(w, pkg=bad_pkg(w, h)), PKG_FAULT[h]))
    add(Case("goose-check", "lava-wrong-vocab", lambda w: _clava(w, ck=str(w["A"]["ck_other_vocab"])),
             r"loihi2 was exported from a different model than \S*ck_other_vocab"))
    add(Case("goose-check", "lava-text-missing", lambda w: _clava(w, text=bad_text(w, "missing")),
             TEXT_FAULT["missing"]))
    # goose-generate
    for h in DAMAGE + ("vocab",):
        add(Case("goose-generate", f"onnx-{h}", lambda w, h=h: _gen(w, d=bad_onnx(w, h)), ONNX_FAULT[h]))
    add(Case("goose-generate", "empty-prompt", lambda w: _gen(w, prompt=""), r"prompt is empty"))
    add(Case("goose-generate", "negative-tokens", lambda w: _gen(w, extra=["--tokens", "-3"]),
             r"--tokens.* must be >= 0"))
    # goose-energy
    for h in DAMAGE:
        add(Case("goose-energy", f"ckpt-{h}", lambda w, h=h: _energy(w, ck=bad_ckpt(w, h)), CKPT_FAULT[h]))
        add(Case("goose-energy", f"profile-{h}", lambda w, h=h: _energy(w, prof=bad_profile(w, h)), PROFILE_FAULT[h]))
    for h in TEXT_DAMAGE:
        add(Case("goose-energy", f"text-{h}", lambda w, h=h: _energy(w, text=bad_text(w, h)), TEXT_FAULT[h]))
    add(Case("goose-energy", "unknown-profile", lambda w: _energy(w, prof="loihi9"),
             r"unknown hardware profile 'loihi9'"))
    add(Case("goose-energy", "unknown-baseline", lambda w: _energy(w, extra=["--baseline", "abacus"]),
             r"unknown hardware profile 'abacus'"))
    add(Case("goose-energy", "teacher-missing", lambda w: _energy(w, extra=["--teacher", teacher_dir(w, "missing")]),
             r"teacher_missing: no config\.json"))
    add(Case("goose-energy", "bad-contexts", lambda w: _energy(w, extra=["--contexts", "12,x"]),
             r"--contexts must be comma-separated integers, got '12,x'"))
    for h in ("under_file", "sys"):
        add(Case("goose-energy", f"unwritable-{h}", lambda w, h=h: _energy(w, out=unwritable(w, h)),
                 UNWRITABLE_FAULT[h]))
    for h in PKG_FAULT:
        add(Case("goose-energy", f"package-{h}", lambda w, h=h: _energy(w, extra=["--package", bad_pkg(w, h)]),
                 PKG_FAULT[h]))
    add(Case("goose-energy", "package-other-model", lambda w: _energy(w, ck=str(w["A"]["ck_other_vocab"]),
                                                                      extra=["--package", str(w["A"]["loihi2"])]),
             r"exported from a different model than the checkpoint"))
    add(Case("goose-energy", "package-wrong-target", lambda w: _energy(w, prof="cmos45-int8",
                                                                       extra=["--package", str(w["A"]["loihi2"])]),
             r"is for loihi2: add --profile loihi2"))
    add(Case("goose-energy", "placement-option", lambda w: _energy(w, prof="loihi2:population=host"),
             r"population='host'"))
    # goose-demo (only cases that fail before any stage runs)
    add(Case("goose-demo", "steps-0", lambda w: _demo(w, extra=["--steps", "0"]), r"--steps must be >= 1 \(got 0\)"))
    add(Case("goose-demo", "teacher-without-data", lambda w: _demo(w, extra=["--teacher", str(w["A"]["teacher"])]),
             r"--teacher needs --data"))
    add(Case("goose-demo", "data-missing", lambda w: _demo(w, extra=["--teacher", str(w["A"]["teacher"]),
                                                                      "--data", bad_text(w, "missing")]),
             DATA_FAULT["missing"]))
    add(Case("goose-demo", "data-binary", lambda w: _demo(w, extra=["--teacher", str(w["A"]["teacher"]),
                                                                     "--data", bad_text(w, "binary")]),
             DATA_FAULT["binary"]))
    for h in ("under_file", "sys"):
        add(Case("goose-demo", f"unwritable-{h}", lambda w, h=h: _demo(w, out=unwritable(w, h)), UNWRITABLE_FAULT[h]))
    for x in c:
        x.id = f"{x.cli}:{x.kind}"
    return c


CASES = cases()


def _snapshot(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_size for p in sorted(d.rglob("*"))} if d.exists() else {}


def _clean(code: int, out: str, err: str, expect: str) -> list[str]:
    """Reasons a result is not clean (empty list = clean)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    bad = []
    if code != 2:
        bad.append(f"exit code {code}")
    if len(lines) != 1:
        bad.append(f"{len(lines)} stderr lines")
    if "Traceback" in err:
        bad.append("traceback")
    if not re.search(expect, err):
        bad.append(f"the line does not name the fault (expected /{expect}/)")
    return bad


def _run_case(A: dict, tmp_path: Path, case: Case) -> list[str]:
    """Run one case in a fresh workspace; returns the reasons it is not clean (and records them)."""
    w = {"A": A, "tmp": tmp_path, "out": str(tmp_path / "OUT")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOOSE_CACHE", str(tmp_path / "gcache"))
        argv = case.argv(w)
        before = _snapshot(Path(w[case.keep])) if case.keep else None
        code, out, err = run_cli(_mains()[case.cli], argv)
    bad = _clean(code, out, err, case.expect)
    if case.keep:
        if _snapshot(Path(w[case.keep])) != before:
            bad.append("pre-existing run directory changed")
    else:
        outs = [a for a in argv if a.startswith(w["out"]) or a.startswith("/sys/")]
        bad += [f"left output {o}" for o in outs if Path(o).exists()]
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".OUT")]
        bad += [f"left temporary {n}" for n in leftovers]
    RESULTS[case.id] = not bad
    MESSAGES[case.id] = err.strip()
    return bad


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(A, tmp_path, case: Case):
    bad = _run_case(A, tmp_path, case)
    assert not bad, f"{case.id}: {bad}; stderr={MESSAGES[case.id][-300:]!r}"


SUBPROCESS = [
    ("goose-export", lambda w: [str(w["tmp"] / "nope"), "--target", "onnx", "-o", w["out"]],
     r"checkpoint \S*nope does not exist"),
    ("goose-energy", lambda w: _energy(w, prof="loihi9"), r"unknown hardware profile 'loihi9'"),
    ("goose-train", lambda w: _train(w, data=bad_text(w, "binary")), DATA_FAULT["binary"]),
]


def _run_subprocesses(A: dict, tmp_path: Path) -> dict[str, list[str]]:
    """The installed console scripts, as a user runs them (started together to save time)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", GOOSE_CACHE=str(tmp_path / "gcache"))
    procs = []
    for i, (cli, argv, expect) in enumerate(SUBPROCESS):
        w = {"A": A, "tmp": tmp_path / str(i), "out": str(tmp_path / str(i) / "OUT")}
        w["tmp"].mkdir()
        procs.append((cli, w, expect, subprocess.Popen([str(BIN / cli), *argv(w)], stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE, text=True, env=env)))
    found = {}
    for cli, w, expect, p in procs:
        out, err = p.communicate(timeout=300)
        bad = _clean(p.returncode, out, err, expect) + (["left output"] if Path(w["out"]).exists() else [])
        RESULTS[f"subprocess:{cli}"] = not bad
        MESSAGES[f"subprocess:{cli}"] = err.strip()
        found[cli] = bad
    return found


def test_bad_input_real_subprocesses(A, tmp_path):
    found = _run_subprocesses(A, tmp_path)
    assert not any(found.values()), {k: (v, MESSAGES[f"subprocess:{k}"][-300:]) for k, v in found.items() if v}


def test_clean_rejects_what_the_matrix_forbids():
    """The gate can fail: wrong code, two lines, a traceback, or a line about something else."""
    line = "goose-x: error: text file /tmp/a/text_missing.txt does not exist\n"
    assert _clean(2, "", line, DATA_FAULT["missing"]) == []
    assert _clean(1, "", line, DATA_FAULT["missing"]) == ["exit code 1"]
    assert _clean(2, "", line + "second\n", DATA_FAULT["missing"]) == ["2 stderr lines"]
    assert "traceback" in _clean(2, "", "Traceback (most recent call last):\n", DATA_FAULT["missing"])
    wrong = "goose-x: error: checkpoint /tmp/a/ck does not exist\n"
    assert _clean(2, "", wrong, DATA_FAULT["missing"]) == [
        f"the line does not name the fault (expected /{DATA_FAULT['missing']}/)"]


def test_matrix_summary(A, tmp_path_factory):
    """The figure: cases tried / cases clean. Cases that have not run in this session (this test
    run alone, or with -k) run here, so the figure always covers every case of the matrix."""
    for case in CASES:
        if case.id not in RESULTS:
            _run_case(A, tmp_path_factory.mktemp("case"), case)
    if not all(f"subprocess:{cli}" in RESULTS for cli, _, _ in SUBPROCESS):
        _run_subprocesses(A, tmp_path_factory.mktemp("subprocesses"))
    tried, clean = len(RESULTS), sum(RESULTS.values())
    per_cli: dict[str, list[int]] = {}
    for k, ok in RESULTS.items():
        v = per_cli.setdefault(k.split(":")[0], [0, 0])
        v[0] += 1
        v[1] += ok
    print(f"\nbad-input matrix: {tried} cases tried / {clean} clean; "
          + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(per_cli.items())))
    if os.environ.get("GOOSE_MATRIX_VERBOSE"):
        print("\n".join(f"{k:40s} {v[:150]}" for k, v in MESSAGES.items()))
    assert tried == len(CASES) + len(SUBPROCESS) and tried > 100
    assert clean == tried, {k: MESSAGES[k][-200:] for k, ok in sorted(RESULTS.items()) if not ok}


def test_os_errors_are_one_line_exit_2(capsys):
    """A file the OS refuses after the up-front checks (full disk, read-only mount) is still exit 2."""
    from goose_neuro.cli import run_cli as cli_runner

    def body(argv):
        raise PermissionError(13, "Permission denied", "/mnt/ro/report.json")

    assert cli_runner("goose-x", body, []) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and "Traceback" not in err
