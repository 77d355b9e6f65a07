"""Energy and sparsity: activity profiling on real text, operation counts from the
deployment IR (one op-cost table, :mod:`goose_neuro.export.opcost`), hardware profiles with
sourced figures (:mod:`goose_neuro.hardware_profiles`), energy estimates against a fair
baseline, NIR graphs with given rates, calibration on a published Loihi measurement, reports.

Notebook use::

    from goose_neuro.energy import energy_report, nir_energy, calibrate
    rep = energy_report("ckpt/", "test.txt", tokens=1024, profiles=["loihi2"])
    rep["fair_baseline"]["break_even"]["loihi2"]          # firing rates where the student stops winning
    nir_energy("net.nir", "rates.yaml", ["loihi"])        # any NIR graph
    calibrate()["ratio"]                                  # estimate / measured, Blouw et al. 2019
    rep["profiles"]["loihi2"]["student"]["by_where"]      # the package: cores, host, host-chip traffic, ...
"""

from goose_neuro.energy.activity import ActivityProfile, PopulationActivity, profile_text, profile_tokens
from goose_neuro.energy.api import REPORT_KEYS, build_report, energy_report
from goose_neuro.energy.baseline import PUBLISHED_THRESHOLDS, dense_twin, rate_model, twin_graph
from goose_neuro.energy.calibration import calibrate
from goose_neuro.energy.counts import GraphCounts, Precision, count_graph
from goose_neuro.energy.estimate import price_table
from goose_neuro.energy.nir_cost import nir_energy
from goose_neuro.energy.package import default_placement, price_placement
from goose_neuro.energy.teacher_cost import GPT2Shape, teacher_cost, teacher_shape
from goose_neuro.hardware_profiles import OP_CLASSES, HardwareProfile, builtin_profiles, load_profile

__all__ = [
    "ActivityProfile", "PopulationActivity", "profile_text", "profile_tokens", "REPORT_KEYS", "build_report",
    "energy_report", "PUBLISHED_THRESHOLDS", "dense_twin", "rate_model", "twin_graph", "calibrate", "GraphCounts",
    "Precision", "count_graph", "price_table", "nir_energy", "GPT2Shape", "teacher_cost", "teacher_shape",
    "OP_CLASSES", "HardwareProfile", "builtin_profiles", "load_profile", "default_placement", "price_placement",
]
