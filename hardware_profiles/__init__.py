"""Hardware profiles (YAML data files, one per target). Loaded by goose_neuro.energy.profiles."""
