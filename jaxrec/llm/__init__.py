"""Frozen LLM encoders (BERT; Llama, Mistral, Qwen2/3, Gemma 1-3, Baichuan2
decoders) from HF safetensors or llama.cpp GGUF checkpoints."""

from typing import Any

__all__ = ["load_hf_model", "param_count"]


def __getattr__(name: str) -> Any:
  # Lazy, so importing jaxrec.llm.embed does not pull in flax and safetensors.
  if name in __all__:
    from jaxrec.llm import checkpoint  # pylint: disable=g-import-not-at-top
    return getattr(checkpoint, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
