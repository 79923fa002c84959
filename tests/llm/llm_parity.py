"""Shared helpers of the LLM parity tests: tiny random torch references,
a right-padded batch, and the max abs difference over real tokens."""

import json
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np

VOCAB = 99


def perturb_(model, norm_center: float = 1.0) -> None:
  """Random biases and norm scales (init makes them 0 and 1, or 0 for Gemma)."""
  import torch  # pylint: disable=g-import-not-at-top
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name and name.endswith("weight"):
        p.copy_(norm_center + 0.2 * torch.randn(p.shape, generator=gen))
      elif name.endswith("bias"):
        p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def padded_batch(length: int = 10, real_second: int = 6):
  """Two right-padded rows of different lengths."""
  rng = np.random.default_rng(0)
  ids = rng.integers(1, VOCAB, size=(2, length)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, real_second:] = 0
  ids[1, real_second:] = 0
  return ids, mask


def torch_hidden(model, ids, mask) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids).long(),
                attention_mask=torch.from_numpy(mask).long())
  return out.last_hidden_state.float().numpy()


def max_diff_on_real(ours, ref, mask) -> float:
  real = mask.astype(bool)
  ours = np.asarray(np.asarray(ours, np.float32) if ours.dtype == jnp.bfloat16
                    else ours, np.float64)
  return float(np.abs(ours[real] - np.asarray(ref, np.float64)[real]).max())


def assert_close_on_real(ours, ref, mask, atol=1e-4, label=""):
  diff = max_diff_on_real(ours, ref, mask)
  # Printed so `pytest -s` reports the parity numbers.
  print(f"\nPARITY {label} max abs diff {diff:.3g} (atol {atol})")
  assert diff <= atol, f"{label}: max abs diff {diff} > {atol}"
  return diff


def edit_config(folder: pathlib.Path, drop=(), **changes) -> dict:
  """Rewrites folder/config.json: drops keys, sets others; returns it."""
  path = pathlib.Path(folder) / "config.json"
  config = json.loads(path.read_text())
  for key in drop:
    config.pop(key, None)
  config.update(changes)
  path.write_text(json.dumps(config))
  return config


def tiny_minilm(folder: pathlib.Path, **sizes) -> pathlib.Path:
  """A random 2-layer BERT of width 32 (or `sizes`) with MiniLM's real tokenizer files,
  so the CEG pipeline (tokenise, batch, embed) runs on a model that costs nothing."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from jaxrec.llm import sources  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  minilm = sources.resolve_model("minilm")
  cfg = transformers.BertConfig(**{**dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=37,
                                          max_position_embeddings=128), **sizes})
  transformers.BertModel(cfg).eval().save_pretrained(folder)
  for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(minilm / name, folder / name)
  return folder
