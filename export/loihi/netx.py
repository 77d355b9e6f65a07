"""netx chain files (lava-dl 0.6.0 HDF5 layout, read by ``lava.lib.dl.netx.hdf5.Network``).

Layout written (see docs/LOIHI_LAVA.md and lava-dl ``netx/hdf5.py``)::

    /layer/0/            only for an on-core CUBA population (Loihi 1, ON/OFF pair, an approximation):
        type b"input", shape [2n], neuron/{type b"CUBA", iDecay 4096, vDecay dv, vThMant, refDelay,
        gradedSpike}; netx builds LIF(du=4095, dv, vth, bias_exp=6)
    /layer/<k>/          the synapses and their readouts:
        type b"dense", shape [rows], weight [rows, inputs] integers in {-1, 0, +1}
        (netx: mantissa +-128 with weight exponent -7, i.e. exactly +-1)
        neuron/  Loihi 2: {type b"SDNN", vThMant 0, sigma_output 1}: netx builds lava's Sigma process,
                 which sends the running sum of its input as a graded spike (netx's default
                 16-bit payload: netx 0.6.0 cannot read a ``messageBits`` entry, its NetDict has
                 no rule for that key; the host differences the sums modulo 2^16, exact even when
                 the sum wraps, since one step's counts are far below 2^15)
                 Loihi 1: {type b"CUBA", iDecay 4096, vDecay 4096, vThMant 131071}: v = counts << 6,
                 never fires; the host reads its state
    attrs["goose_input_message_bits"]  2 for graded +-1 input spikes (Loihi 2), 0 for binary

Populations that netx cannot express (lava-nc TernaryLIF, the programmable subtract-reset neuron,
host neurons) are not in the file; the manifest wires them.
"""

from __future__ import annotations

import os

import numpy as np

VTH_MANT_MAX = (1 << 17) - 1
SIGMA_MESSAGE_BITS = 16  # netx's default payload width of SDNN neurons


def _cuba(group, v_decay: int, vth: int) -> None:
    n = group.create_group("neuron")
    n.create_dataset("type", (1,), "S10", [b"CUBA"])
    for k, v in {"iDecay": 4096, "vDecay": v_decay, "vThMant": vth, "refDelay": 1, "gradedSpike": 0}.items():
        n.create_dataset(k, data=np.int64(v))


def _sigma(group) -> None:
    n = group.create_group("neuron")
    n.create_dataset("type", (1,), "S10", [b"SDNN"])
    for k, v in {"vThMant": 0, "sigma_output": 1}.items():
        n.create_dataset(k, data=np.int64(v))


def write_net(path: str | os.PathLike, weight: np.ndarray, target: str, cuba_input: dict | None = None) -> None:
    """Write one chain. ``cuba_input`` ({'n': compartments, 'dv': int, 'vth': int}) prepends the
    on-core CUBA population as netx's ``input`` layer."""
    import h5py

    with h5py.File(path, "w") as f:
        layers, k = f.create_group("layer"), 0
        if cuba_input is not None:
            g = layers.create_group("0")
            g.create_dataset("type", (1,), "S10", [b"input"])
            g.create_dataset("shape", data=np.array([cuba_input["n"]], dtype=np.int64))
            _cuba(g, int(cuba_input["dv"]), int(cuba_input["vth"]))
            k = 1
        g = layers.create_group(str(k))
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([weight.shape[0]], dtype=np.int64))
        g.create_dataset("weight", data=weight.astype(np.int64))
        if target == "loihi2":
            _sigma(g)
        else:
            _cuba(g, 4096, VTH_MANT_MAX)
        f.attrs["goose_input_message_bits"] = 2 if target == "loihi2" else 0
