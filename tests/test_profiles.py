"""Hardware profiles: every shipped file validates; malformed files fail naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from goose_neuro.energy.estimate import price_table, host_for
from goose_neuro.energy.profiles import (CONFIDENCE, OP_CLASSES, builtin_profiles, load_profile,
                                         validate_profile)
from goose_neuro.errors import ProfileError

REQUIRED = {"loihi", "loihi2", "spinnaker2", "truenorth", "cmos45-fp32", "cmos45-int8", "gpu-titanblack"}


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
