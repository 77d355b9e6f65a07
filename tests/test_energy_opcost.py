"""The one op-cost table (goose_neuro.export.opcost): every IR node type counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from goose_neuro.export import ir
from goose_neuro.export.opcost import Precision, graph_cost, node_cost

S1 = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [1, 1, 0, -1]], np.int8)  # column nonzeros [2, 2, 2, 1]
S2 = np.array([[1, -1, 0, 0], [0, 0, 1, 1], [-1, 0, 0, 1]], np.int8)  # column nonzeros [2, 1, 1, 2]
E = np.array([1.0, 0.0, 0.5, 0.25])  # events per token per channel of 'lif' (sum 1.75)
P = Precision(weight_bits_ternary=2, weight_bits_dense=8, state_bits=16, activation_bits=10, event_driven=True)


def every_node_graph() -> ir.Graph:
    """tokens -> emb(5x4) -> ln -> shift -> lif -+-> syn_sign (4->3, sign, spike) --+-> add -> sig ------> mul -> wkv -> head(3->5)
                                                 +-> amp -> syn_graded (split) ----+       -> relu --+------^"""
    f = np.float32
    nodes = {
        "tokens": ir.TokenInput(vocab_size=5),
        "emb": ir.Embedding(inputs=("tokens",), weight=np.ones((5, 4), f)),
        "ln": ir.LayerNorm(inputs=("emb",), weight=np.ones(4, f), bias=np.zeros(4, f)),
        "shift": ir.ShiftMix(inputs=("ln",), mu=np.full(4, 0.5, f), state="s"),
        "lif": ir.LIF(inputs=("shift",), beta=np.full(4, 0.5, f), threshold=np.ones(4, f), state="m"),
        "syn_sign": ir.TernaryDense(inputs=("lif",), sign=S1, scale_pos=np.ones(3, f), scale_neg=np.ones(3, f)),
        "amp": ir.Scale(inputs=("lif",), scale=np.full(4, 0.3, f)),
        "syn_graded": ir.TernaryDense(inputs=("amp",), encoding="split", sign=S2, scale_pos=np.ones(3, f),
                                      scale_neg=np.full(3, 2.0, f), input_kind="graded"),
        "add": ir.Add(inputs=("syn_sign", "syn_graded")),
        "sig": ir.Sigmoid(inputs=("add",)),
        "relu": ir.ReLUSquare(inputs=("add",)),
        "mul": ir.Mul(inputs=("sig", "relu")),
        "wkv": ir.WKV(inputs=("mul", "relu"), time_decay=np.zeros(3, f), time_first=np.zeros(3, f),
                      state_a="a", state_b="b", state_p="p"),
        "head": ir.Dense(inputs=("wkv",), weight=np.ones((5, 3), f)),
        "logits": ir.Output(inputs=("head",)),
    }
    states = {"s": ir.StateSpec(4), "m": ir.StateSpec(4), "a": ir.StateSpec(3), "b": ir.StateSpec(3),
              "p": ir.StateSpec(3)}
    return ir.Graph(nodes=nodes, states=states).validate()


def _total(costs: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in costs.values():
        for k, v in c.items():
            out[k] = out.get(k, 0.0) + v
    return out


def test_each_node_by_hand_event_driven():
    g = every_node_graph()
    c = graph_cost(g, {"lif": E}, P)
    assert c["emb"]["mem_dense_bits"] == 4 * 8 and c["emb"]["mem_act_bits"] == 4 * 10 * 2
    assert {k: v for k, v in c["ln"].items() if v} == {"add": 16, "mac": 4, "mul": 8, "nonlin": 1,
                                                       "mem_dense_bits": 64, "mem_act_bits": 80}
    assert c["shift"]["mem_state_bits"] == 2 * 4 * 16 and c["shift"]["mul"] == 8 and c["shift"]["add"] == 4
    assert c["lif"]["neuron"] == 4 and c["lif"]["spike"] == 1.75 and c["lif"]["mem_neuron_bits"] == 4 * 4 * 16
    assert c["lif"]["mem_act_bits"] == 0  # spikes are messages on an event-driven device
    assert c["amp"]["mul"] == 1.75  # one multiply per event
    assert c["syn_sign"]["ac"] == 1 * 2 + 0 * 2 + 0.5 * 2 + 0.25 * 1 and c["syn_sign"]["mac"] == 0
    assert c["syn_sign"]["mul"] == 3 and c["syn_sign"]["add"] == 0 and c["syn_sign"]["mem_syn_bits"] == 1.75 * 3 * 2
    assert c["syn_graded"]["mac"] == 1 * 2 + 0.5 * 1 + 0.25 * 2 and c["syn_graded"]["ac"] == 0
    assert c["syn_graded"]["mul"] == 6 and c["syn_graded"]["add"] == 3 and c["syn_graded"]["mem_dense_bits"] == 48
    assert c["add"]["mem_act_bits"] == 3 * 10 * 3  # two consumers
    assert c["wkv"]["add"] == 36 and c["wkv"]["mul"] == 18 and c["wkv"]["nonlin"] == 15
    assert c["wkv"]["mem_state_bits"] == 6 * 3 * 16 and c["wkv"]["mem_dense_bits"] == 2 * 3 * 8
    assert c["head"]["mac"] == 15 and c["head"]["mem_dense_bits"] == 120
    assert all(v == 0 for v in c["tokens"].values()) and all(v == 0 for v in c["logits"].values())
    assert _total(c) == {"ac": 3.25, "mac": 22, "add": 65, "mul": 50.75, "nonlin": 19, "neuron": 4, "spike": 1.75,
                         "mem_syn_bits": 21, "mem_dense_bits": 432, "mem_neuron_bits": 256, "mem_state_bits": 416,
                         "mem_act_bits": 900}


def test_dense_device_and_static_counts():
    g = every_node_graph()
    dense = _total(graph_cost(g, {"lif": E}, Precision(2, 8, 16, 10, event_driven=False)))
    assert dense["ac"] == 12 and dense["mac"] == 12 + 4 + 15  # every synapse (NeuroBench Dense)
    assert dense["mul"] == 50.75 - 1.75 + 4 and dense["mem_syn_bits"] == 2 * 4 * 3 * 2
    assert dense["mem_act_bits"] == 900 + 4 * 2 * 3  # the ternary spike map, written once, read twice
    static = _total(graph_cost(g, None, P))  # every neuron fires every token
    assert static["ac"] == 7 and static["mac"] == 6 + 4 + 15 and static["spike"] == 4
    assert static["mem_syn_bits"] == 2 * 4 * 3 * 2


def test_counts_are_linear_in_events():
    """cost(a e1 + b e2) = a cost(e1) + b cost(e2) - cost(0) (a + b - 1): the break-even rate relies on it."""
    g = every_node_graph()
    e1, e2 = np.array([0.2, 0.9, 0.0, 0.4]), np.array([0.7, 0.1, 0.3, 0.0])
    c0 = _total(graph_cost(g, {"lif": np.zeros(4)}, P))
    c1, c2 = _total(graph_cost(g, {"lif": e1}, P)), _total(graph_cost(g, {"lif": e2}, P))
    cm = _total(graph_cost(g, {"lif": 0.3 * e1 + 2.0 * e2}, P))
    for k in cm:
        assert cm[k] == pytest.approx(0.3 * c1[k] + 2.0 * c2[k] - 1.3 * c0[k], abs=1e-9), k


def test_bad_events_and_unknown_node_fail_loudly(monkeypatch):
    from goose_neuro.errors import ExportError

    g = every_node_graph()
    with pytest.raises(ExportError, match="'lif'.*no events"):
        node_cost(g, "syn_sign", {}, P)
    with pytest.raises(ExportError, match="shape"):
        node_cost(g, "syn_sign", {"lif": np.ones(3)}, P)

    class Mystery(ir.Node):
        pass

    monkeypatch.setitem(ir.NODE_TYPES, "Mystery", Mystery)
    g.nodes["odd"] = Mystery(inputs=("head",))
    g.edges.append(("head", "odd"))
    with pytest.raises(NotImplementedError, match="Mystery"):
        node_cost(g, "odd", {"lif": E}, P)


def test_opcost_imports_no_energy_layer():
    import subprocess
    import sys

    code = ("import sys, goose_neuro.export.opcost; "
            "print([m for m in sys.modules if m.startswith('goose_neuro.energy')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
