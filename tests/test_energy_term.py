"""Energy-aware distillation: the prices are the energy report's own numbers, the term has
gradients, lowers the priced firing rate, and refuses what it cannot price."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from goose_neuro.cli.train import main as train_main  # noqa: E402
from goose_neuro.config import preset  # noqa: E402
from goose_neuro.data import split_tokens, tokenize_source  # noqa: E402
from goose_neuro.energy.counts import count_graph  # noqa: E402
from goose_neuro.energy.estimate import energy_by_class, host_for, price_table, total  # noqa: E402
from goose_neuro.energy.package import default_placement, price_placement  # noqa: E402
from goose_neuro.energy.training import activity_prices, activity_pricer  # noqa: E402
from goose_neuro.errors import ConfigError  # noqa: E402
from goose_neuro.export import ir  # noqa: E402
from goose_neuro.export.lower import lower  # noqa: E402
from goose_neuro.export.opcost import Precision  # noqa: E402
from goose_neuro.hardware_profiles import load_profile  # noqa: E402
from goose_neuro.model import ASNNGoose  # noqa: E402
from goose_neuro.neurons import SpikeLIF  # noqa: E402
from goose_neuro.teacher import load_teacher, make_tiny_teacher  # noqa: E402
from goose_neuro.training import TrainConfig, Trainer  # noqa: E402
from goose_neuro.training.energy_term import priced_rate, rate_excess  # noqa: E402

from _text import corpus  # noqa: E402


def _model(**kw) -> ASNNGoose:
    torch.manual_seed(0)
    return ASNNGoose(preset("tiny", head_input="spike", quantize_head=True, **kw)).eval()


def _uniform_events(g, seed=0):
    rng = np.random.default_rng(seed)
    rates = {k: float(rng.uniform(0.02, 0.6)) for k in g.of_type(ir.LIF)}
    return rates, {k: np.full(g.nodes[k].n, r) for k, r in rates.items()}


def test_prices_reproduce_the_package_price_on_loihi2():
    """On a Loihi target the prices are the report's: the package goose-export writes, priced where each
    node runs (cores, float64 host, host-chip traffic, spike hops)."""
    m = _model()
    ap = activity_prices(m, "loihi2")
    assert "package" in ap.note
    g = lower(m)
    prof = load_profile("loihi2")
    pl = default_placement(g, "loihi2")
    rates, events = _uniform_events(g)
    want = price_placement(g, pl, events, prof)["energy_pj_per_token"]
    assert ap.energy_pj({k: r * g.nodes[k].n for k, r in rates.items()}) == pytest.approx(want, rel=1e-9)
    zero = {k: np.zeros_like(v) for k, v in events.items()}
    assert ap.e0_pj == pytest.approx(price_placement(g, pl, zero, prof)["energy_pj_per_token"], rel=1e-12)
    # one event of the head's population: at least a spike message plus one accumulate per nonzero weight of
    # its 256-row column; the rest (hops between cores) is small
    prices = price_table(prof, host_for(prof))
    col = (g.nodes["head"].sign != 0).sum(0).mean()
    floor = prices["spike"].pj + prices["ac"].pj * col
    assert floor <= ap.per_event_pj["head_lif"] <= 1.05 * floor
    assert ap.per_event_pj["head_lif"] == max(ap.per_event_pj.values())  # the dearest event
    assert set(ap.neurons) == set(m.populations()) and ap.neurons["head_lif"] == 32


def test_prices_reproduce_the_class_table_on_a_cmos_profile():
    m = _model(spike_mode="ternary")
    g = lower(m)
    prof = load_profile("cmos45-fp32")
    ap = activity_prices(m, prof)
    prices, prec = price_table(prof, host_for(prof)), Precision.from_profile(prof)
    rates, events = _uniform_events(g, 1)
    want = total(energy_by_class(count_graph(g, None, prec, events=events).totals, prices))
    assert ap.energy_pj({k: r * g.nodes[k].n for k, r in rates.items()}) == pytest.approx(want, rel=1e-12)


def test_a_dense_device_prices_no_event_and_the_term_refuses_it():
    ap = activity_prices(_model(), "cmos45-int8")
    assert ap.full_pj == 0 and ap.e0_pj > 0
    with pytest.raises(ConfigError, match="charges nothing per spike event"):
        priced_rate({"head_lif": torch.ones(1, 1, 32)}, ap)


def test_the_term_has_surrogate_gradients_on_the_membranes():
    lif = SpikeLIF(6, mode="ternary")
    x = torch.tensor([[[2.0, -2.0, 0.1, 0.45, -0.45, 0.0]]], requires_grad=True)
    _, s, _ = lif(x, lif.init_mem(1))
    assert s.detach().tolist() == [[[1.0, -1.0, 0.0, 0.0, 0.0, 0.0]]]
    rate_excess({"p": s}, 0.0).backward()
    g = x.grad[0, 0]
    assert g[0] > 0 and g[1] < 0  # lowering |membrane| of a firing neuron lowers the term
    assert torch.all(g[2:] == 0)  # silent neurons cost nothing


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("energy_term")
    tdir = make_tiny_teacher(root / "teacher", corpus(), vocab_size=120, n_positions=32)
    (root / "text.txt").write_text(corpus())
    teacher = load_teacher(tdir)
    ids = tokenize_source(root / "text.txt", teacher.tokenizer, root / "cache")
    return {"root": root, "tdir": tdir, "teacher": teacher, "ids": ids}


def _trainer(env, out, pricer=None, **kw) -> Trainer:
    cfg = TrainConfig(**{**dict(steps=12, batch_size=4, seq_len=12, warmup=2, eval_every=12, ckpt_every=12,
                                eval_windows=4, max_windows=64, lr=5e-3), **kw})
    tr_ids, va_ids = split_tokens(env["ids"], 0.1)
    mcfg = preset("tiny", vocab_size=env["teacher"].vocab_size, head_input="spike", quantize_head=True)
    return Trainer(mcfg, cfg, env["teacher"], tr_ids, va_ids, out, env["root"] / "cache", pricer=pricer)


def test_the_energy_weight_lowers_the_estimated_energy(env, tmp_path):
    pricer = activity_pricer("loihi2")
    tr_off, tr_on = (_trainer(env, tmp_path / d, pricer, energy_weight=w) for d, w in (("off", 0.0), ("on", 30.0)))
    off, on = tr_off.train(), tr_on.train()
    assert off["energy_profile"] == on["energy_profile"] == "loihi2"
    assert on["energy_pj"] < off["energy_pj"]
    # the part the events decide (above each model's E0: readouts, traffic, host ops) fell the most
    assert on["energy_pj"] - tr_on.prices.e0_pj < 0.7 * (off["energy_pj"] - tr_off.prices.e0_pj)
    assert on["spike_sparsity"] > off["spike_sparsity"]
    recs = [json.loads(x) for x in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if r.get("kind") != "eval"]
    assert all(0 <= r["energy_term"] <= 1 and r["energy_pj"] > 0 for r in steps)
    assert steps[-1]["energy_term"] < steps[0]["energy_term"]


def test_a_resumed_run_prices_like_the_uninterrupted_one(env, tmp_path):
    pricer = activity_pricer("loihi2")
    kw = dict(energy_weight=5.0, steps=6, eval_every=3, ckpt_every=3)
    _trainer(env, tmp_path / "a", pricer, **kw).train()
    _trainer(env, tmp_path / "b", pricer, **kw).train(stop_after=3)
    _trainer(env, tmp_path / "b", pricer, **kw).train(resume=True)

    def losses(d):
        return [(r["loss"], r["energy_term"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
                if r.get("kind") != "eval"]

    assert len(losses(tmp_path / "a")) == 6 and losses(tmp_path / "b") == losses(tmp_path / "a")


def test_the_rate_target_needs_no_prices_and_the_priced_term_does(env, tmp_path):
    with pytest.raises(ConfigError, match="activity_pricer"):
        _trainer(env, tmp_path / "a", energy_weight=1.0)
    tr = _trainer(env, tmp_path / "b", energy_weight=5.0, rate_target=0.05, steps=4, eval_every=4, ckpt_every=4)
    s = tr.train()
    assert tr.prices is None and "energy_pj" not in s
    recs = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["energy_term"] >= 0 for r in recs if r.get("kind") != "eval")


@pytest.mark.parametrize("kw, words", [(dict(energy_weight=-1.0), "energy_weight"),
                                       (dict(rate_target=1.5), "rate_target"),
                                       (dict(energy_profile=""), "energy_profile")])
def test_train_config_checks_the_energy_options(kw, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**kw)


@pytest.mark.parametrize("args, words", [
    (["--energy-profile", "no-such-chip"], "no-such-chip"),
    (["--energy-profile", "cmos45-int8", "--energy-weight", "1"], "charges nothing per spike event"),
])
def test_goose_train_bad_energy_options_are_one_line(env, tmp_path, capsys, args, words):
    rc = train_main(["--teacher", str(env["tdir"]), "--data", str(env["root"] / "text.txt"), "--preset", "tiny",
                     "--out", str(tmp_path / "run"), "--steps", "2", "--seq-len", "12", "--batch-size", "4",
                     "--cache-dir", str(env["root"] / "cache"), *args])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "run").exists()  # refused before anything was written
