"""What learns: the transformer, its config (one `depth` dial), tokenizers, and loading
and saving in the Hugging Face layout."""

from scalinglab.model.config import ModelConfig
from scalinglab.model.transformer import Transformer

__all__ = ["ModelConfig", "Transformer"]
