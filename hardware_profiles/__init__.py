"""Hardware profiles: one YAML data file per target, and the schema that validates them.

A leaf package every layer may read (core, exporters, energy)::

    from goose_neuro.hardware_profiles import load_profile
    prof = load_profile("loihi2")                  # or a path to a user's .yaml
    prof.energy["ac"].figure.pj                    # pJ per synaptic op, with .source and .confidence
    prof.formats["decay_bits"].value               # 12: number formats live here, not in code
    prof.limits["cores_per_chip"].value            # 128
"""

from goose_neuro.hardware_profiles.schema import (
    COMPUTE_CLASSES, CONFIDENCE, FORMAT_KEYS, KINDS, MEM_CLASSES, OP_CLASSES, PRECISION_KEYS, SCHEMA_VERSION,
    STATIC_KEYS, TRAFFIC_KEYS, EnergyEntry, Figure, HardwareProfile, _read_text, builtin_profiles, load_profile,
    load_profiles, validate_profile)

__all__ = [
    "COMPUTE_CLASSES", "CONFIDENCE", "FORMAT_KEYS", "KINDS", "MEM_CLASSES", "OP_CLASSES", "PRECISION_KEYS",
    "SCHEMA_VERSION", "STATIC_KEYS", "TRAFFIC_KEYS", "EnergyEntry", "Figure", "HardwareProfile", "builtin_profiles",
    "load_profile", "load_profiles", "validate_profile", "_read_text",
]
