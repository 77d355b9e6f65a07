"""Energy and sparsity: activity profiling on real text, operation counts from the
deployment IR, hardware profiles with sourced figures, energy estimates and reports.

Notebook use::

    from goose_neuro.energy import energy_report, load_profile
    rep = energy_report("ckpt/", "test.txt", tokens=1024, profiles=["loihi2"])
"""

from goose_neuro.energy.activity import ActivityProfile, PopulationActivity, profile_text, profile_tokens
from goose_neuro.energy.api import REPORT_KEYS, build_report, energy_report
from goose_neuro.energy.counts import GraphCounts, Precision, count_graph
from goose_neuro.energy.estimate import price_table
from goose_neuro.hardware_profiles import OP_CLASSES, HardwareProfile, builtin_profiles, load_profile
from goose_neuro.energy.teacher_cost import GPT2Shape, teacher_cost, teacher_shape

__all__ = [
    "ActivityProfile", "PopulationActivity", "profile_text", "profile_tokens", "REPORT_KEYS", "build_report",
    "energy_report", "GraphCounts", "Precision", "count_graph", "price_table", "OP_CLASSES", "HardwareProfile",
    "builtin_profiles", "load_profile", "GPT2Shape", "teacher_cost", "teacher_shape",
]
