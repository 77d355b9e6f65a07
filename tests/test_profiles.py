"""Hardware profiles: every shipped file validates; malformed files fail naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from goose_neuro.energy.estimate import host_for, price_table
from goose_neuro.errors import ProfileError
from goose_neuro.hardware_profiles import (CONFIDENCE, FORMAT_KEYS, OP_CLASSES, builtin_profiles, load_profile,
                                           validate_profile)

REQUIRED = {"loihi", "loihi2", "spinnaker2", "truenorth", "cmos45-fp32", "cmos45-fp64", "cmos45-int8",
            "gpu-titanblack"}


def _raw(name: str) -> dict:
    from importlib import resources

    return yaml.safe_load((resources.files("goose_neuro.hardware_profiles") / f"{name}.yaml").read_text())


def test_required_profiles_ship_and_validate():
    assert REQUIRED <= set(builtin_profiles())
    for name in builtin_profiles():
        p = load_profile(name)
        assert p.name == name
        assert set(p.energy) == set(OP_CLASSES)
        prices = price_table(p, host_for(p))
        for cls, pr in prices.items():
            # no silent zeros: a zero price always says where the cost went
            assert pr.pj > 0 or pr.how.endswith(tuple(f"included in {c}" for c in OP_CLASSES)), (name, cls)
            assert pr.source and (pr.confidence in CONFIDENCE or pr.confidence == "n/a")


def test_loihi2_says_energies_are_unpublished_proxies():
    p = load_profile("loihi2")
    assert any("not published" in n for n in p.notes)
    for e in p.energy.values():
        if e.figure is not None:
            assert e.figure.confidence == "assumed"
            assert "PROXY" in e.figure.source


def test_known_values_and_units():
    fp32 = load_profile("cmos45-fp32")
    assert fp32.energy["ac"].figure.pj == pytest.approx(0.9)
    assert fp32.energy["mac"].figure.pj == pytest.approx(4.6)
    assert fp32.energy["mem_dense_bits"].figure.pj == pytest.approx(100 / 64)
    assert load_profile("spinnaker2").energy["neuron"].figure.pj == pytest.approx(2190.0)  # 2.19 nJ
    assert load_profile("gpu-titanblack").energy["mac"].figure.pj == pytest.approx(300.0)
    assert load_profile("loihi").limits["cores_per_chip"].value == 128
    loihi = price_table(load_profile("loihi"), load_profile("cmos45-fp32"))
    assert loihi["mac"].how == "host (cmos45-fp32)" and loihi["mac"].pj == pytest.approx(4.6)
    assert loihi["mem_syn_bits"].pj == 0 and loihi["mem_syn_bits"].how == "included in ac"


def test_loihi_host_is_float64_and_fp64_figures_are_labelled_proxies():
    """The Loihi package's host ops run in float64: both Loihi profiles fall back to cmos45-fp64."""
    for name in ("loihi", "loihi2"):
        prof = load_profile(name)
        assert prof.host_fallback == "cmos45-fp64"
        prices = price_table(prof, host_for(prof))
        assert prices["mul"].how == "host (cmos45-fp64)" and prices["mul"].pj == pytest.approx(18.0)
        assert prices["nonlin"].pj == pytest.approx(80.0)
    assert price_table(load_profile("loihi"), load_profile("cmos45-fp64"))["mac"].pj == pytest.approx(20.0)
    fp64 = load_profile("cmos45-fp64")
    assert fp64.bits("activation_bits") == 64 and fp64.bits("weight_bits_dense") == 64
    for cls in ("ac", "mac", "add", "mul", "nonlin", "neuron"):
        fig = fp64.energy[cls].figure
        assert fig.confidence == "assumed", cls
    assert fp64.energy["mul"].figure.pj == pytest.approx(3.7 * (53 / 24) ** 2, rel=0.01)
    assert fp64.energy["add"].figure.pj == pytest.approx(0.9 * 53 / 24, rel=0.01)


def test_loihi_synop_note_states_kerasspiking_figure_correctly():
    ac = load_profile("loihi").energy["ac"].figure
    assert ac.pj == pytest.approx(23.6)
    assert "(23.6 + 3.5) pJ" in ac.note and "agree" not in ac.note


# lava-nc 0.10.0 (lava/proc/lif/models.py, lava/proc/dense/models.py): the values the exporter reads
LAVA_FORMATS = {"decay_bits": 12, "state_bits": 24, "threshold_mantissa_bits": 17, "synaptic_input_bits": 16,
                "activation_shift_bits": 6, "weight_mantissa_bits": 8, "bias_mantissa_bits": 13}


@pytest.mark.parametrize("name, payload", [("loihi", 1), ("loihi2", 24)])
def test_loihi_formats(name, payload):
    f = load_profile(name).formats
    assert set(f) == set(FORMAT_KEYS)
    assert {k: int(f[k].value) for k in LAVA_FORMATS} == LAVA_FORMATS
    assert f["spike_payload_bits"].value == payload
    for k, fig in f.items():
        assert fig.unit == "bit" and fig.source and fig.confidence in CONFIDENCE, k
        if k != "spike_payload_bits" or name == "loihi2":
            assert "lava-nc 0.10.0" in fig.source, k


def test_traffic_and_static_figures():
    lo = load_profile("loihi")
    assert lo.traffic["spike_hop_ew"].pj == 3.0 and lo.traffic["spike_hop_ns"].pj == 4.0
    assert lo.traffic["spike_hop_ew"].confidence == "secondary"
    hc = lo.traffic["host_chip_bit"]
    assert hc.pj == pytest.approx(1300 / 64) and hc.confidence == "assumed" and hc.source.startswith("PROXY")
    assert load_profile("loihi2").traffic["spike_hop_ns"].confidence == "assumed"
    # static: power without a time basis prices nothing; with a time it is power x chips x time
    assert lo.static["power_per_chip"].si == pytest.approx(0.104)
    assert lo.static_pj_per_token() is None
    assert lo.static_pj_per_token(chips=3, seconds_per_token=2e-3) == pytest.approx(0.104 * 3 * 2e-3 * 1e12)
    assert load_profile("cmos45-fp32").static_pj_per_token(seconds_per_token=1.0) is None


def test_hardware_profiles_is_a_leaf():
    """Importing the profiles imports neither torch nor the energy or export layers."""
    import subprocess
    import sys

    code = ("import sys, goose_neuro.hardware_profiles as h; h.load_profile('loihi2'); "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('goose_neuro.energy', 'goose_neuro.export'))]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_user_profile_by_path(tmp_path):
    raw = _raw("cmos45-fp32")
    raw["name"] = "my-chip"
    raw["energy"]["ac"] = {"value": 50, "unit": "fJ", "source": "my measurement", "confidence": "published"}
    raw["energy"]["mem_act_bits"] = {"value": 10, "unit": "pJ/64bit", "source": "x", "confidence": "derived"}
    f = tmp_path / "my.yaml"
    f.write_text(yaml.safe_dump(raw))
    p = load_profile(f)
    assert p.name == "my-chip"
    assert p.energy["ac"].figure.pj == pytest.approx(0.05)
    assert p.energy["mem_act_bits"].figure.pj == pytest.approx(10 / 64)


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r["energy"]["ac"].pop("unit"), "energy.ac.unit"),
    (lambda r: r["energy"]["ac"].update(unit="furlongs"), "energy.ac.unit"),
    (lambda r: r["energy"]["ac"].update(unit="pJ/bit"), "energy.ac.unit"),
    (lambda r: r["energy"]["mem_syn_bits"].update(unit="pJ"), "energy.mem_syn_bits.unit"),
    (lambda r: r["energy"]["mul"].pop("source"), "energy.mul.source"),
    (lambda r: r["energy"]["mul"].update(confidence="pretty sure"), "energy.mul.confidence"),
    (lambda r: r["energy"]["mul"].update(value=-1), "energy.mul.value"),
    (lambda r: r["energy"]["mul"].update(value="3.7"), "energy.mul.value"),
    (lambda r: r["energy"].pop("nonlin"), "energy.nonlin"),
    (lambda r: r["energy"].update(teleport={"value": 1, "unit": "pJ", "source": "s", "confidence": "assumed"}), "energy.teleport"),
    (lambda r: r["energy"].update(spike={"included_in": "warp"}), "energy.spike.included_in"),
    (lambda r: r["energy"].update(spike={"included_in": "ac"}), "energy.spike.note"),
    (lambda r: r["energy"].update(add={"included_in": "mul", "note": "x"}, mul={"included_in": "add", "note": "y"}), "energy.add.included_in"),
    (lambda r: r.pop("precision"), "precision"),
    (lambda r: r["precision"]["state_bits"].update(unit="byte"), "precision.state_bits"),
    (lambda r: r.update(kind="quantum"), "kind"),
    (lambda r: r.update(event_driven="yes"), "event_driven"),
    (lambda r: r.update(schema_version=99), "schema_version"),
    (lambda r: r["limits"].update(cores={"value": 3}), "limits.cores.unit"),
    (lambda r: r.update(formats={"decay_bits": {"value": 12, "unit": "byte", "source": "s", "confidence": "published"}}),
     "formats.decay_bits"),
    (lambda r: r.update(formats={"decay_bits": {"value": 12.5, "unit": "bit", "source": "s", "confidence": "published"}}),
     "formats.decay_bits"),
    (lambda r: r.update(formats={"decay_bitz": {"value": 12, "unit": "bit", "source": "s", "confidence": "published"}}),
     "formats.decay_bitz"),
    (lambda r: r.update(formats=[1, 2]), "formats"),
    (lambda r: r.update(traffic={"host_chip_bit": {"value": 20, "unit": "pJ", "source": "s", "confidence": "assumed"}}),
     "traffic.host_chip_bit.unit"),
    (lambda r: r.update(traffic={"spike_hop_ew": {"value": 3, "unit": "pJ/bit", "source": "s", "confidence": "assumed"}}),
     "traffic.spike_hop_ew.unit"),
    (lambda r: r.update(static={"power_per_chip": {"value": 0.1, "unit": "pJ", "source": "s", "confidence": "derived"}}),
     "static.power_per_chip.unit"),
    (lambda r: r.update(static={"time_per_token": {"value": 1, "unit": "W", "source": "s", "confidence": "derived"}}),
     "static.time_per_token.unit"),
    (lambda r: r.update(format={}), "format"),
])
def test_schema_errors_name_the_field(tmp_path, mutate, field):
    raw = copy.deepcopy(_raw("cmos45-fp32"))
    mutate(raw)
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError, match=rf"'{field}"):
        load_profile(f)


def test_host_class_needs_host_fallback():
    raw = _raw("loihi")
    raw.pop("host_fallback")
    with pytest.raises(ProfileError, match="host_fallback"):
        validate_profile(raw, "x")


def test_unknown_name_malformed_yaml_and_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="unknown hardware profile 'loihi9'.*loihi2"):
        load_profile("loihi9")
    f = tmp_path / "broken.yaml"
    f.write_text("energy: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(f)
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.yaml")
    f.write_text("- just\n- a list\n")
    with pytest.raises(ProfileError, match="top level"):
        load_profile(f)
    f.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(f)
