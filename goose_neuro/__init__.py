"""goose-neuro: distil, export and cost spiking language models (ASNN-Goose)."""

from goose_neuro.config import PRESETS, ModelConfig, preset
from goose_neuro.errors import GooseError
from goose_neuro.model import ASNNGoose

__version__ = "0.1.0"
__all__ = ["ASNNGoose", "ModelConfig", "PRESETS", "preset", "GooseError", "__version__"]
