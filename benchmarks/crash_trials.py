"""Crash safety of goose-train: SIGKILL during checkpoint writes, then ``--resume``.

Builds a tiny random GPT-2 teacher and a small text in a temporary directory, then:

1. runs ``goose-train`` once without interruption (the reference losses);
2. for each trial, starts ``goose-train --resume`` on a second run directory and kills it
   with SIGKILL at a random moment. Most kills are aimed at checkpoint writes: the script
   polls ``checkpoints/``, lets 0-3 writes complete, and fires a random 0-``--max-delay-ms`` ms
   after the next temporary checkpoint directory appears; the rest fire at a random time in the
   first ``--random-window`` seconds after the trial's first checkpoint write;
3. after every kill, checks every ``checkpoints/step_N`` directory the trainer could pick:
   the newest must load (weights through ``load_checkpoint``, training state through the
   trainer's own ``resume``); older ones are counted separately;
4. finally lets ``--resume`` run to the end and compares the logged losses with the
   reference run (bit-identical on CPU when resume restores data order and optimizer state).

    .venv/bin/python benchmarks/crash_trials.py              # 24 trials, a few minutes
    .venv/bin/python benchmarks/crash_trials.py --trials 50 --json

Figures printed: trials; kills that landed inside a checkpoint write (a temporary directory was
left behind); unloadable newest checkpoints (must be 0) and unloadable older ones; resumes from a
checkpoint (trials that started with one on disk), resumed runs (of those, the ones that loaded it
and logged training steps from that step on) and those that also wrote a later checkpoint; and
whether the final losses equal the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = Path(sys.executable).with_name("goose-train")


def corpus(n: int = 400, seed: int = 0) -> str:
    """A small repetitive English-like text."""
    rng = random.Random(seed)
    words = "the prince said that anna and pierre went to moscow in the winter of war and peace".split()
    return "\n".join(" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(n))


def setup(root: Path) -> tuple[Path, Path]:
    """Tiny teacher directory and training text under ``root``."""
    from goose_neuro.teacher import make_tiny_teacher

    text = root / "text.txt"
    text.write_text(corpus(), encoding="utf-8")
    tdir = make_tiny_teacher(root / "teacher", corpus(), vocab_size=120, n_positions=32)
    return tdir, text


def train_cmd(args, tdir: Path, text: Path, out: Path, cache: Path, resume: bool) -> list[str]:
    """The goose-train command line (checkpoint every step)."""
    cmd = [str(TRAIN), "--teacher", str(tdir), "--data", str(text), "--preset", "tiny", "--out", str(out),
           "--steps", str(args.steps), "--batch-size", "4", "--seq-len", "12", "--warmup", "5",
           "--ckpt-every", str(args.ckpt_every), "--eval-every", "1000000", "--eval-windows", "2",
           "--keep-checkpoints", "2", "--cache-dir", str(cache), "--threads", "1", "--max-windows", "64"]
    return cmd + (["--resume"] if resume else [])


def env() -> dict[str, str]:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
             TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    return e


def temp_dirs(ckdir: Path) -> set[str]:
    """Temporary checkpoint directories (``.step_N.*.tmp``): present while a checkpoint is written,
    or left behind by a kill inside a write."""
    try:
        return {n for n in os.listdir(ckdir) if n.startswith(".step_") and n.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def step_dirs(run: Path) -> list[Path]:
    from goose_neuro.training import CKPT_RE

    root = run / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if CKPT_RE.match(p.name))


def loadable(ck: Path, make_trainer) -> tuple[bool, str]:
    """Weights load and the trainer resumes from exactly this directory."""
    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.training import STATE_DIR

    try:
        load_checkpoint(ck)
        if not (ck / STATE_DIR / "state.json").is_file():
            return False, "no training state"
        tr = make_trainer(ck)
        return (tr.step == int(ck.name.split("_")[1])), f"step {tr.step}"
    except Exception as e:  # report, do not stop: counting failures is the point
        return False, f"{type(e).__name__}: {e}"


def make_probe(tdir: Path, text: Path, cache: Path, args):
    """A function that builds an in-process Trainer on a copy holding only ``ck`` and resumes it."""
    import shutil

    import torch

    from goose_neuro.cli.train import build_parser, train_config
    from goose_neuro.config import preset
    from goose_neuro.data import split_tokens, tokenize_source
    from goose_neuro.teacher import load_teacher
    from goose_neuro.training import Trainer

    torch.set_num_threads(1)
    teacher = load_teacher(tdir)
    a = build_parser().parse_args(train_cmd(args, tdir, text, Path("x"), cache, False)[1:])
    cfg = train_config(a)
    tr_ids, va_ids = split_tokens(tokenize_source(text, teacher.tokenizer, cache), a.val_fraction)
    mcfg = preset("tiny", vocab_size=teacher.vocab_size)

    def probe(ck: Path):
        with tempfile.TemporaryDirectory() as d:
            shutil.copytree(ck, Path(d) / "checkpoints" / ck.name)
            tr = Trainer(mcfg, cfg, teacher, tr_ids, va_ids, d, cache)
            if not tr.resume():
                raise RuntimeError("resume found no checkpoint")
            return tr

    return probe


def losses(run: Path) -> list[float]:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r["loss"] for r in recs if r.get("kind") != "eval"]


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def last_logged_step(run: Path) -> int:
    """Highest training step in metrics.jsonl (-1 if none); lines cut by a kill are skipped."""
    best = -1
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") != "eval":
            best = max(best, int(rec.get("step", -1)))
    return best


def one_trial(cmd: list[str], ckdir: Path, aim_write: bool, rng: random.Random, args) -> dict:
    """Start goose-train and SIGKILL it: inside its (1 + k)-th checkpoint write (k random in
    0..``--let-pass``), or at a random time after training started (its first write)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    deadline = time.monotonic() + args.timeout
    let_pass = rng.randint(0, args.let_pass)
    initial = temp_dirs(ckdir)  # leftovers of earlier kills are not writes
    fire_at, writes, seen = None, 0, set(initial)
    while p.poll() is None and time.monotonic() < deadline:
        now, cur = time.monotonic(), temp_dirs(ckdir)
        if cur - seen:  # a new checkpoint write started
            seen |= cur
            writes += 1
            if fire_at is None and (not aim_write or writes > let_pass):
                delay = args.max_delay_ms / 1000 if aim_write else args.random_window
                fire_at = now + rng.uniform(0, delay)
        if fire_at is not None and now >= fire_at:
            break
        time.sleep(0.0005)
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
        p.wait()
    err = p.stderr.read().decode(errors="replace").strip() if p.stderr else ""
    return {"killed": killed, "rc": p.returncode, "aimed_at_write": aim_write, "writes_seen": writes,
            "left_temp_dir": bool(temp_dirs(ckdir) - initial), "stderr_tail": err.splitlines()[-1:] if err else []}


def run_trials(args) -> dict:
    """Everything: reference run, killed trials, final resume, comparison."""
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="goose-crash-") as d:
        root = Path(d)
        tdir, text = setup(root)
        cache = root / "cache"
        t0 = time.monotonic()
        ref = subprocess.run(train_cmd(args, tdir, text, root / "ref", cache, False), env=env(),
                             capture_output=True, text=True)
        if ref.returncode != 0:
            raise SystemExit(f"reference run failed: {ref.stderr.strip()[-400:]}")
        ref_s = time.monotonic() - t0
        probe = make_probe(tdir, text, cache, args)
        run = root / "run"
        ckdir = run / "checkpoints"
        res = {"trials": 0, "killed": 0, "kills_inside_write": 0, "unloadable_newest": 0,
               "unloadable_older": 0, "resumes_from_checkpoint": 0, "resumed_runs": 0, "advanced_checkpoint": 0,
               "exited_before_kill": 0, "failed_starts": [],
               "reference_seconds": round(ref_s, 1), "problems": []}
        prev = None
        for i in range(args.trials):
            aim = rng.random() < args.write_share
            ino = _inode(run / "metrics.jsonl")
            tr = one_trial(train_cmd(args, tdir, text, run, cache, resume=i > 0), ckdir, aim, rng, args)
            res["trials"] += 1
            res["killed"] += tr["killed"]
            res["kills_inside_write"] += tr["killed"] and tr["left_temp_dir"]
            if not tr["killed"]:
                res["exited_before_kill"] += 1
                if tr["rc"] != 0:
                    res["failed_starts"].append(tr["stderr_tail"])
            newest = inspect_checkpoints(run, probe, res, i)
            if prev is not None:  # this trial started with --resume from checkpoint step `prev`
                res["resumes_from_checkpoint"] += 1
                # resume() rewrites metrics.jsonl (new inode) as its last act; then steps from `prev` on
                res["resumed_runs"] += _inode(run / "metrics.jsonl") != ino and last_logged_step(run) >= prev
                res["advanced_checkpoint"] += newest is not None and newest > prev
            if args.verbose:
                print(f"trial {i:3d} aim={'write' if aim else 'random'} killed={tr['killed']} "
                      f"mid-write={tr['left_temp_dir']} newest=step_{newest}", flush=True)
            prev = newest
        fin = subprocess.run(train_cmd(args, tdir, text, run, cache, True), env=env(), capture_output=True, text=True)
        res["final_resume_rc"] = fin.returncode
        got, want = losses(run), losses(root / "ref")
        res["final_steps_logged"] = len(got)
        res["losses_equal_uninterrupted"] = got == want
        res["max_abs_loss_diff"] = max((abs(a - b) for a, b in zip(got, want)), default=None) \
            if len(got) == len(want) else None
        res["leftover_temp_dirs"] = sum(1 for n in os.listdir(ckdir) if n.startswith(".")) if ckdir.is_dir() else 0
        return res


def inspect_checkpoints(run: Path, probe, res: dict, trial: int) -> int | None:
    """Count unloadable checkpoints after a kill; returns the newest step (None if none)."""
    dirs = step_dirs(run)
    for k, ck in enumerate(dirs):
        last = k == len(dirs) - 1
        ok, why = loadable(ck, probe) if last else _quick(ck)
        res["unloadable_newest" if last else "unloadable_older"] += not ok
        if not ok:
            res["problems"].append(f"trial {trial}: {ck.name}: {why}")
    return int(dirs[-1].name.split("_")[1]) if dirs else None


def _quick(ck: Path) -> tuple[bool, str]:
    """Older checkpoints: weights load (the trainer only ever resumes from the newest)."""
    from goose_neuro.checkpoint import load_checkpoint

    try:
        load_checkpoint(ck)
        return True, ""
    except Exception as e:
        return False, f"{type(e).__name__}: {e}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--steps", type=int, default=150, help="steps of the run (enough for every trial)")
    ap.add_argument("--ckpt-every", type=int, default=1)
    ap.add_argument("--write-share", type=float, default=0.75, help="share of kills aimed at checkpoint writes")
    ap.add_argument("--max-delay-ms", type=float, default=15.0, help="kill this long (at most) into a write")
    ap.add_argument("--let-pass", type=int, default=3, help="aimed kills: let up to this many writes finish first")
    ap.add_argument("--random-window", type=float, default=1.0,
                    help="random-time kills: seconds after the first checkpoint write of the trial")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a trial may run before the kill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    res = run_trials(a)
    res["wall_seconds"] = round(time.monotonic() - t0, 1)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k in ("trials", "killed", "kills_inside_write", "unloadable_newest", "unloadable_older",
                  "resumes_from_checkpoint", "resumed_runs", "advanced_checkpoint",
                  "exited_before_kill", "final_resume_rc", "final_steps_logged", "losses_equal_uninterrupted",
                  "max_abs_loss_diff", "leftover_temp_dirs", "wall_seconds"):
            print(f"{k:28s} {res[k]}")
        for p in res["problems"][:10]:
            print("problem:", p)
    return 0 if res["unloadable_newest"] == 0 and res["losses_equal_uninterrupted"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
