"""goose-demo: the whole pipeline in one command, offline by default.

    goose-demo [--out runs/demo] [--quick]
    goose-demo --teacher gpt2 --data hf:wikitext:wikitext-2-raw-v1 --steps 2000   (with a network)

Stages, each also a command of its own (the demo only chains them and prints the
equivalent commands into ``OUT/SUMMARY.md``)::

    teacher        the cached demo teacher (python -m goose_neuro.cli.demo_teacher), or --teacher
    train          goose-train                      -> OUT/student/
    export onnx    goose-export --target onnx       -> OUT/onnx/
    check onnx     goose-check onnx                 -> OUT/checks/onnx.json
    export loihi2  goose-export --target loihi2     -> OUT/loihi2/
    check lava     goose-check lava (needs .venv-lava; skipped, with the reason, without it)
    energy         goose-energy                     -> OUT/energy/report.md (+ plots)

Each stage calls the library function its command calls (``distill``,
``export_checkpoint``, ``check_onnx``, ``check_lava``, ``energy_report``). A stage that
fails is reported with its message and the stages that need its output are skipped.
Exit code: 0 when every stage that ran passed, 1 otherwise, 2 bad options.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from goose_neuro.cli import make_parser, run_cli
from goose_neuro.errors import CheckFailed, DataError, GooseError

PROG = "goose-demo"
log = logging.getLogger(__name__)

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"
# A check whose correctness part passed (Lava equals the integer reference bit for bit) but whose
# quality target (integer vs float agreement) was missed: reported, but not a broken pipeline.
BELOW = "below target"


class Skip(Exception):
    """A stage cannot run here (the message says why); not a failure."""


@dataclass
class Stage:
    """One line of the summary: what ran, how it went, how long, the key figure, the command."""

    name: str
    status: str = SKIPPED
    seconds: float = 0.0
    result: str = ""
    command: str = ""
    outputs: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """Resolved inputs and options of one demo run."""

    out: Path
    teacher: str
    train_text: str
    val_text: str | None
    demo_teacher: bool
    steps: int
    preset: str
    batch_size: int
    seq_len: int
    eval_every: int
    check_tokens: int
    gen_tokens: int
    energy_tokens: int
    lava_tokens: int
    threads: int
    teacher_card: dict[str, Any] = field(default_factory=dict)
    eval_file: str = ""  # UTF-8 text for the checks and the energy profile
    cache_dir: str = ""  # token and teacher-logit cache of goose-train (the demo teacher's cache root)

    @property
    def student(self) -> Path:
        return self.out / "student"

    @property
    def eval_text(self) -> str:
        return self.eval_file or self.val_text or self.train_text


# -- options --------------------------------------------------------------------------------
def build_parser():
    p = make_parser(PROG, "Run the whole goose-neuro pipeline (distil, export to ONNX and Loihi 2, check, "
                          "energy report). Offline by default, on the cached demo teacher.")
    p.add_argument("--out", default="runs/demo", help="output directory (one subdirectory per stage)")
    p.add_argument("--teacher", default=None,
                   help="Hugging Face causal LM (hub name or directory); default: the demo teacher")
    p.add_argument("--data", default=None, help="training text (file, directory or hf:DATASET); "
                                                "default: the demo teacher's corpus")
    p.add_argument("--val-data", default=None, help="validation/evaluation text (default: the demo corpus' "
                                                    "val.txt; with --data, the last 5%% of --data for training "
                                                    "and --data itself for the checks)")
    p.add_argument("--steps", type=int, default=None, help="distillation steps (default 300, --quick 30)")
    p.add_argument("--preset", default=None, help="student preset (default: mini with the demo teacher, at 44%% "
                                                  "of its parameters; small with --teacher; --quick: tiny)")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: tiny student, few steps and tokens")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: all cores on an idle machine, 1 on a busy one)")
    p.add_argument("--teacher-budget", type=float, default=None,
                   help="seconds of demo-teacher training when it is not cached yet (default 75)")
    return p


def make_plan(a) -> Plan:
    """Resolve teacher and data (building or reusing the demo teacher) and the run sizes."""
    from goose_neuro import demo_teacher as dt
    from goose_neuro.data import default_cache_dir
    from goose_neuro.fileio import check_writable_dir
    from goose_neuro.teacher import teacher_context
    from goose_neuro.training.distributed import pick_threads, set_threads

    out = check_writable_dir(a.out)  # created only once the options are known good (_eval_file)
    if a.steps is not None and a.steps < 1:
        raise GooseError(f"--steps must be >= 1 (got {a.steps})")
    quick = bool(a.quick)
    if a.threads is not None and a.threads < 1:
        raise GooseError(f"--threads must be >= 1 (got {a.threads})")
    threads = a.threads or pick_threads()
    set_threads(threads)
    student = "tiny" if quick else ("mini" if a.teacher is None else "small")
    sizes = dict(steps=a.steps or (30 if quick else 300), preset=a.preset or student,
                 batch_size=8, seq_len=64, eval_every=10 if quick else 100, check_tokens=128 if quick else 512,
                 gen_tokens=8 if quick else 32, energy_tokens=256 if quick else 2048,
                 lava_tokens=16 if quick else 128, threads=threads, cache_dir=str(default_cache_dir()))
    if a.teacher is not None and a.data is None:
        raise DataError("--teacher needs --data (the text to distil on), e.g. --data hf:wikitext:wikitext-2-raw-v1")
    if a.teacher is None:
        spec = dt.DemoTeacherSpec(budget_s=a.teacher_budget) if a.teacher_budget else dt.DemoTeacherSpec()
        d = dt.ensure_demo_teacher(spec=spec, log=_say)
        teacher, card = str(d), dt.read_card(d) or {}
        train, val = a.data or str(d / dt.TRAIN_FILE), a.val_data or (None if a.data else str(d / dt.VAL_FILE))
    else:
        teacher, card, train, val = a.teacher, {}, a.data, a.val_data
    sizes["seq_len"] = min(sizes["seq_len"], teacher_context(teacher) or sizes["seq_len"])
    plan = Plan(out, teacher, train, val, a.teacher is None, teacher_card=card, **sizes)
    plan.eval_file = _eval_file(val or train, out, whole=val is not None)
    return plan


EVAL_TAIL_CHARS = 200_000


def _eval_file(source: str, out: Path, whole: bool) -> str:
    """A UTF-8 file the checks and the energy profile can read.

    A local file given as validation text is used as is. Otherwise (a directory, an
    ``hf:`` dataset, or the training file itself) the last 200,000 characters of the
    text are written to ``OUT/eval.txt``: goose-train holds out the end of --data for
    validation, so this is (about) the held-out part.
    """
    from goose_neuro.fileio import atomic_write_text
    from goose_neuro.text import read_texts

    if whole and Path(source).is_file():
        out.mkdir(parents=True, exist_ok=True)
        return source
    text = "\n".join(t for _, t in read_texts(source))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "eval.txt"
    atomic_write_text(path, text[-EVAL_TAIL_CHARS:])
    return str(path)


def _say(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def _cmd(*parts: Any) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts if p is not None and p != "")


# -- stages -----------------------------------------------------------------------------------
def stage_teacher(plan: Plan, st: Stage) -> None:
    card = plan.teacher_card
    if plan.demo_teacher:
        p = card.get("ppl_token_level", {})
        st.result = (f"demo teacher: GPT-2 {card.get('layers')}x{card.get('dim')}, {card.get('params', 0):,} params, "
                     f"val ppl {p.get('val_trained')} (untrained {p.get('val_random_init')}, "
                     f"unigram {p.get('val_unigram')})")
        st.figures = {"label": card.get("label"), "ppl": p, "build_seconds": card.get("build_seconds")}
        st.command = _cmd("python", "-m", "goose_neuro.cli.demo_teacher")
    else:
        st.result = f"teacher {plan.teacher} (loaded by the train stage)"
    st.outputs = [plan.teacher]
    st.status = OK


STUDENT_LABEL = ("ASNN-Goose student distilled by goose-demo from the demo teacher "
                 "(GPT-2 trained on Python standard-library docstrings)")


def stage_train(plan: Plan, st: Stage) -> None:
    from goose_neuro.distill import distill
    from goose_neuro.energy.training import activity_pricer
    from goose_neuro.training import TrainConfig
    from goose_neuro.training.config import RECIPE_ENERGY_WEIGHT

    # goose-train's defaults: CTKD, POCL and the energy term priced on loihi2
    cfg = TrainConfig(steps=plan.steps, batch_size=plan.batch_size, seq_len=plan.seq_len, eval_every=plan.eval_every,
                      ckpt_every=plan.steps, keep_checkpoints=1, warmup=min(50, max(1, plan.steps // 10)),
                      energy_weight=RECIPE_ENERGY_WEIGHT)
    st.command = _cmd("goose-train", "--teacher", plan.teacher, "--data", plan.train_text, "--out", plan.student,
                      "--preset", plan.preset, "--steps", cfg.steps, "--batch-size", cfg.batch_size,
                      "--seq-len", cfg.seq_len, "--eval-every", cfg.eval_every, "--ckpt-every", cfg.ckpt_every,
                      "--keep-checkpoints", cfg.keep_checkpoints, "--warmup", cfg.warmup,
                      *(("--val-data", plan.val_text) if plan.val_text else ()), "--threads", plan.threads,
                      *(("--cache-dir", plan.cache_dir) if plan.cache_dir else ()))
    ev = distill(plan.teacher, plan.train_text, plan.student, train=cfg, preset=plan.preset, val_data=plan.val_text,
                 threads=plan.threads, cache_dir=plan.cache_dir or None,
                 meta={"label": STUDENT_LABEL} if plan.demo_teacher else None,
                 pricer=activity_pricer(cfg.energy_profile, priced_term=cfg.priced_energy))
    st.figures = {k: ev.get(k) for k in ("step", "student_ppl", "teacher_ppl", "spike_sparsity", "tokens")}
    st.result = (f"{ev.get('step')} steps; val ppl student {_f(ev.get('student_ppl'))} vs teacher "
                 f"{_f(ev.get('teacher_ppl'))}; spike sparsity {_f(ev.get('spike_sparsity'), 3)}")
    st.outputs = [str(plan.student)]
    st.status = OK


def stage_export(target: str) -> Callable[[Plan, Stage], None]:
    def run(plan: Plan, st: Stage) -> None:
        from goose_neuro.export import export_checkpoint

        out = plan.out / target
        st.command = _cmd("goose-export", "--target", target, plan.student, "-o", out)
        path = export_checkpoint(plan.student, target, out)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        st.outputs = [str(path)]
        st.figures = {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
        st.result = f"{path} ({len(files)} files, {st.figures['bytes'] / 1e6:.1f} MB)"
        st.status = OK
    return run


def stage_check_onnx(plan: Plan, st: Stage) -> None:
    from goose_neuro.export import onnx_check as chk
    from goose_neuro.fileio import atomic_write_json

    onnx_dir = plan.out / "onnx"
    st.command = _cmd("goose-check", "onnx", onnx_dir, "--checkpoint", plan.student, "--text", plan.eval_text,
                      "--max-eval-tokens", plan.check_tokens, "--tokens", plan.gen_tokens)
    rep = chk.check_onnx(str(onnx_dir), str(plan.student), plan.eval_text, gen_tokens=plan.gen_tokens,
                         max_eval_tokens=plan.check_tokens)
    (plan.out / "checks").mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan.out / "checks" / "onnx.json", rep)
    st.outputs = [str(plan.out / "checks" / "onnx.json")]
    keys = ("passed", "max_abs_logit_diff", "argmax_agreement", "ppl_torch", "ppl_onnx", "ppl_rel_diff",
            "greedy_identical", "onnx_tokens_per_s", "torch_tokens_per_s")
    st.figures = {k: rep.get(k) for k in keys}
    st.result = (f"{rep['eval_tokens']} tokens: max|dlogit| {rep['max_abs_logit_diff']:.2g}, argmax "
                 f"{rep['argmax_agreement']:.2%}, ppl {rep['ppl_torch']:.2f}/{rep['ppl_onnx']:.2f}, greedy "
                 f"{'same' if rep['greedy_identical'] else 'differs'}; ORT {rep['onnx_tokens_per_s']:.0f} tok/s")
    if not rep["passed"]:
        raise CheckFailed(chk.failure_line(rep) + " -- " + st.result)
    st.status = OK


def stage_check_lava(plan: Plan, st: Stage) -> None:
    from goose_neuro.export.loihi import check as chk
    from goose_neuro.fileio import atomic_write_json

    py = chk.lava_python()
    if py is None:
        raise Skip("no Lava environment here (.venv-lava or $GOOSE_LAVA_PYTHON); `make lava-env` creates it "
                   "(needs a Python 3.10)")
    pkg = plan.out / "loihi2"
    st.command = _cmd("goose-check", "lava", pkg, "--checkpoint", plan.student, "--text", plan.eval_text,
                      "--lava-tokens", plan.lava_tokens, "--eval-tokens", plan.check_tokens)
    rep = chk.check_lava(str(pkg), str(plan.student), plan.eval_text, lava_tokens=plan.lava_tokens,
                         eval_tokens=plan.check_tokens, python=py)
    (plan.out / "checks").mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan.out / "checks" / "lava.json", _jsonable(rep))
    st.outputs = [str(plan.out / "checks" / "lava.json")]
    lv, q = rep["lava"], rep["quality"]
    st.figures = {"passed": rep["passed"], "checks": rep["checks"], "quality": q,
                  "lava": {k: v for k, v in lv.items() if not isinstance(v, (list, dict))}}
    st.result = (f"Lava {lv['tokens']} tokens: {lv['spike_mismatches']} of {lv['spikes_total']} spikes differ from "
                 f"the checkpoint's model, argmax {lv['argmax_agreement']:.2%}, {lv['lava_tokens_per_s']:.1f} tok/s; "
                 f"deployed ppl {q['ppl_deployed']:.3f} vs trained {q['ppl_trained']:.3f} over {q['eval_tokens']} tokens")
    if rep["passed"]:
        st.status = OK
        return
    exact = all(rep["checks"].get(k, True) for k in ("package_matches_checkpoint", "lava_spikes_match",
                                                     "lava_logits_match", "lava_argmax_agreement"))
    if not exact:
        raise CheckFailed(chk.failure_line(rep) + " -- " + st.result)
    st.status = BELOW  # Lava runs the package exactly; the deployed arithmetic misses the quality target
    st.result = chk.failure_line(rep) + " -- " + st.result


def _jsonable(x: Any) -> Any:
    """Round-trip through JSON with str() for what JSON cannot hold (numpy scalars, paths)."""
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _energy_teacher(plan: Plan) -> str:
    """What the energy report's teacher comparison reads: a directory with the teacher's
    config.json (only its shape is used), or the built-in ``gpt2-124m`` shape."""
    from goose_neuro.teacher import teacher_config_dir

    if not Path(plan.teacher).is_dir() and plan.teacher.lower() in ("gpt2", "gpt2-124m"):
        return "gpt2-124m"
    return str(teacher_config_dir(plan.teacher, plan.out / "teacher_config"))


def stage_energy(plan: Plan, st: Stage) -> None:
    from goose_neuro.energy import energy_report
    from goose_neuro.hardware_profiles import builtin_profiles

    profiles = list(builtin_profiles())
    out = plan.out / "energy"
    teacher = _energy_teacher(plan)
    st.command = _cmd("goose-energy", "--checkpoint", plan.student, "--text", plan.eval_text, "--tokens",
                      plan.energy_tokens, *[x for p in profiles for x in ("--profile", p)], "--teacher", teacher,
                      "-o", out)
    rep = energy_report(str(plan.student), plan.eval_text, plan.energy_tokens, profiles, "cmos45-fp32", teacher,
                        (128, 512, 1024), str(out), progress=False, plots=True)
    act = rep["activity"]
    per = {n: {"student_pj": b["student"]["energy_pj_per_token"],
               "teacher_pj_ctx128": b["teacher"]["128"]["energy_pj_per_token"],
               "ratio_ctx128": b["student_over_teacher"]["128"]} for n, b in rep["profiles"].items()}
    shape = rep["teacher"]["shapes"][rep["teacher"]["name"]]
    ctx = "512" if (shape.get("n_positions") or 0) >= 512 else "128"  # within the teacher's own context
    fair = rep["fair_baseline"]
    st.figures = {"activation_sparsity": act["activation_sparsity"], "firing_rate": act["firing_rate"],
                  "tokens": act["tokens"], "profiles": per, "student_params": rep["model"]["params"],
                  "teacher_params": shape.get("params"), "context": int(ctx),
                  "teacher_pj": {k: fair["teachers"][k][ctx] for k in ("fp32", "int8")}}
    st.outputs = [str(out / "report.md")] + sorted(str(p) for p in out.glob("*.png"))
    l2 = per.get("loihi2")
    head = ""
    if l2:
        t8, t32 = st.figures["teacher_pj"]["int8"], st.figures["teacher_pj"]["fp32"]
        head = (f"loihi2 {l2['student_pj'] / 1e6:.3g} uJ/token vs teacher at context {ctx} on 45 nm CMOS: int8 "
                f"{t8 / 1e6:.3g} uJ (x{l2['student_pj'] / t8:.2g}), fp32 {t32 / 1e6:.3g} uJ "
                f"(x{l2['student_pj'] / t32:.2g}); ")
    st.result = f"{head}sparsity {act['activation_sparsity']:.3f} over {act['tokens']} tokens"
    st.status = OK


def compression_line(done: dict[str, Stage]) -> str | None:
    """One line: the student's size, perplexity and energy per token against its teacher's."""
    tr, en = done.get("train"), done.get("energy")
    if tr is None or en is None or tr.status != OK or en.status != OK:
        return None
    f, g = tr.figures, en.figures
    sp, tp, l2 = f.get("student_ppl"), f.get("teacher_ppl"), g["profiles"].get("loihi2")
    n_s, n_t = g.get("student_params"), g.get("teacher_params")
    parts = []
    if n_s and n_t:
        parts.append(f"student {n_s / 1e6:.2f}M params = {n_s / n_t:.0%} of the teacher's {n_t / 1e6:.2f}M")
    if sp and tp:
        parts.append(f"val perplexity {sp:.1f} vs {tp:.1f} (x{sp / tp:.2f})")
    if l2:
        e = l2["student_pj"]
        t8, t32 = g["teacher_pj"]["int8"], g["teacher_pj"]["fp32"]
        parts.append(f"energy per token on loihi2 {e / 1e6:.2g} uJ = 1/{t8 / e:.1f} of the int8 teacher and "
                     f"1/{t32 / e:.0f} of the fp32 teacher (45 nm CMOS, context {g['context']}; estimates)")
    return "compression: " + "; ".join(parts)


STAGES: list[tuple[str, Callable[[Plan, Stage], None], tuple[str, ...]]] = [
    ("train", stage_train, ()),
    ("export onnx", stage_export("onnx"), ("train",)),
    ("check onnx", stage_check_onnx, ("export onnx",)),
    ("export loihi2", stage_export("loihi2"), ("train",)),
    ("check lava", stage_check_lava, ("export loihi2",)),
    ("energy", stage_energy, ("train",)),
]


def run_stage(name: str, fn: Callable[[Plan, Stage], None], plan: Plan, needs: Sequence[str],
              done: dict[str, Stage]) -> Stage:
    """Run one stage, turning every outcome into a Stage record (never raises, except Ctrl-C)."""
    st = Stage(name)
    missing = [n for n in needs if done[n].status != OK]
    if missing:
        st.status, st.result = SKIPPED, f"needs {', '.join(missing)}"
        return st
    _say(f"[goose-demo] {name} ...")
    t0 = time.perf_counter()
    try:
        fn(plan, st)
    except Skip as e:
        st.status, st.result = SKIPPED, str(e)
    except GooseError as e:
        st.status, st.result = FAILED, " ".join(str(e).split())
    except Exception as e:  # a bug in a stage: report it, keep going with the stages that do not need it
        log.error("%s crashed:\n%s", name, traceback.format_exc())
        st.status, st.result = FAILED, f"crashed: {type(e).__name__}: {e}"
    st.seconds = time.perf_counter() - t0
    return st


# -- summary ------------------------------------------------------------------------------------
def _f(x: Any, nd: int = 1) -> str:
    return f"{x:.{nd}f}" if isinstance(x, (int, float)) else "n/a"


def summary_table(stages: Sequence[Stage], total_s: float) -> str:
    w = max(len(s.name) for s in stages)
    lines = [f"{'stage':{w}s}  {'status':13s} {'time':>7s}  result"]
    for s in stages:
        t = f"{s.seconds:6.1f}s" if s.seconds else "      -"
        lines.append(f"{s.name:{w}s}  {s.status:13s} {t}  {s.result}")
    lines.append(f"{'total':{w}s}  {'':13s} {total_s:6.1f}s")
    return "\n".join(lines)


def write_summary(plan: Plan, stages: Sequence[Stage], total_s: float, table: str) -> Path:
    """OUT/summary.json and OUT/SUMMARY.md (table, figures, the standalone commands)."""
    from goose_neuro.fileio import atomic_write_json, atomic_write_text

    who = "the demo teacher" if plan.demo_teacher else f"teacher {plan.teacher}"
    atomic_write_json(plan.out / "summary.json", {
        "format": "goose-neuro-demo-summary", "version": 1, "teacher": plan.teacher,
        "demo_teacher": plan.demo_teacher, "teacher_card": plan.teacher_card or None,
        "train_text": plan.train_text, "eval_text": plan.eval_text, "total_seconds": round(total_s, 1),
        "stages": [asdict(s) for s in stages]})
    md = [f"# goose-demo run ({who})", ""]
    if plan.demo_teacher:
        card = plan.teacher_card
        md += [f"The teacher is the **demo teacher**: a small GPT-2 ({card.get('params', 0):,} parameters) trained "
               f"for {card.get('training', {}).get('steps')} steps on CPU on the docstrings of Python's standard "
               f"library (card: `{Path(plan.teacher) / 'teacher_card.json'}`). Its figures show the "
               "pipeline working offline; they say nothing about real language models. For real work run "
               "`goose-demo --teacher gpt2 --data <dataset>`.", ""]
    md += ["```", table, "```", "", "## Each stage alone", ""]
    md += [f"- {s.name}: `{s.command}`" for s in stages if s.command]
    md += ["", "## Outputs", ""] + [f"- {s.name}: " + ", ".join(f"`{o}`" for o in s.outputs)
                                    for s in stages if s.outputs]
    atomic_write_text(plan.out / "SUMMARY.md", "\n".join(md) + "\n")
    return plan.out / "SUMMARY.md"


def _body(argv: Sequence[str] | None) -> int:
    a = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    teacher = Stage("teacher")
    plan = make_plan(a)
    teacher.seconds = time.perf_counter() - t0
    stage_teacher(plan, teacher)
    done = {"teacher": teacher}
    for name, fn, needs in STAGES:
        done[name] = run_stage(name, fn, plan, needs, done)
    stages = list(done.values())
    total = time.perf_counter() - t0
    table = summary_table(stages, total)
    comp = compression_line(done)
    path = write_summary(plan, stages, total, table + (f"\n{comp}" if comp else ""))
    label = " (demo teacher)" if plan.demo_teacher else ""
    if comp:
        table = f"{table}\n{comp}"
    _say(f"\ngoose-demo summary{label}\n{table}")
    energy = done["energy"]
    report = energy.outputs[0] if energy.status == OK else None
    _say(f"summary: {path}")
    _say(f"report: {report}" if report else "report: not written (energy stage did not run)")
    failed = [s.name for s in stages if s.status == FAILED]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
