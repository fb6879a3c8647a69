"""Hub remote code for the converted Firefox Translations students (copied next to each converted checkpoint)."""

from .configuration_marian_ssru import MarianSSRUConfig
from .modeling_marian_ssru import MarianSSRUForConditionalGeneration, MarianSSRUModel, marian_sinusoids

__all__ = ["MarianSSRUConfig", "MarianSSRUForConditionalGeneration", "MarianSSRUModel", "marian_sinusoids"]
