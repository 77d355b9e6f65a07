"""netx chain files (lava-dl 0.6.0 HDF5 layout, read by ``lava.lib.dl.netx.hdf5.Network``).

Layout written (see docs/LOIHI_LAVA.md and lava-dl ``netx/hdf5.py``)::

    /layer/0/            only when the population is on-core CUBA (Loihi 1, ON/OFF pair):
        type b"input", shape [2n], neuron/{type b"CUBA", iDecay 4096, vDecay dv, vThMant, refDelay,
        gradedSpike}; netx builds LIF(du=4095, dv, vth, bias_exp=6) driven by its bias
    /layer/<k>/          the synapses and their readout:
        type b"dense", shape [rows], weight [rows, inputs] integers in {-1, 0, +1}
        (netx: mantissa +-128 with weight exponent -7, i.e. exactly +-1)
        neuron/{type b"CUBA", iDecay 4096, vDecay 4096, vThMant 131071, refDelay, gradedSpike}
    attrs["goose_input_message_bits"]  2 for graded +-1 input spikes (Loihi 2), 0 for binary

The readout is ``LIF(du=4095, dv=4096, vth=131071)``: ``v = counts << 6`` every step (one step
after the spikes, as lava's Dense delivers) and it never fires. Populations that netx cannot
express (the Loihi 2 ternary neuron, host-side neurons) are not in the file; the manifest wires them.
"""

from __future__ import annotations

import os

import numpy as np

VTH_MANT_MAX = (1 << 17) - 1


def _neuron(group, i_decay: int, v_decay: int, vth: int) -> None:
    n = group.create_group("neuron")
    n.create_dataset("type", (1,), "S10", [b"CUBA"])
    for k, v in {"iDecay": i_decay, "vDecay": v_decay, "vThMant": vth, "refDelay": 1, "gradedSpike": 0}.items():
        n.create_dataset(k, data=np.int64(v))


def write_net(path: str | os.PathLike, weight: np.ndarray, graded_input: bool,
              cuba_input: dict | None = None) -> None:
    """Write one chain. ``cuba_input`` ({'n': compartments, 'dv': int, 'vth': int}) prepends the
    on-core CUBA population as netx's ``input`` layer."""
    import h5py

    with h5py.File(path, "w") as f:
        layers, k = f.create_group("layer"), 0
        if cuba_input is not None:
            g = layers.create_group("0")
            g.create_dataset("type", (1,), "S10", [b"input"])
            g.create_dataset("shape", data=np.array([cuba_input["n"]], dtype=np.int64))
            _neuron(g, 4096, int(cuba_input["dv"]), int(cuba_input["vth"]))
            k = 1
        g = layers.create_group(str(k))
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([weight.shape[0]], dtype=np.int64))
        g.create_dataset("weight", data=weight.astype(np.int64))
        _neuron(g, 4096, 4096, VTH_MANT_MAX)
        f.attrs["goose_input_message_bits"] = 2 if graded_input else 0
