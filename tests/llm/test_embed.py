"""CEG: bucketed, sharded, padded batches give the embeddings of one-at-a-time
unpadded forward passes; the cache is keyed and reused."""

import numpy as np
import pytest
import torch
import transformers

from jaxrec import sharding
from jaxrec.llm import embed
from jaxrec.llm.checkpoint import load_hf_model


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
  torch.manual_seed(0)
  cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=37,
                                max_position_embeddings=128)
  folder = tmp_path_factory.mktemp("tiny_bert")
  reference = transformers.BertModel(cfg).eval()
  reference.save_pretrained(folder)
  return (*load_hf_model(folder)[:2], reference)


@pytest.fixture(scope="module")
def texts_and_reference(tiny_bert):
  """Random token texts and each one's hidden states from its own unpadded
  forward pass of the PyTorch reference."""
  rng = np.random.default_rng(0)
  token_ids = [list(rng.integers(1, 99, size=n)) for n in rng.integers(3, 40, size=11)]
  with torch.no_grad():
    hidden = [tiny_bert[2](torch.tensor([ids])).last_hidden_state[0].numpy() for ids in token_ids]
  return token_ids, hidden


@pytest.mark.parametrize("pooling,devices", [("mean", 1), ("last", 1), ("mean", 8)])
def test_bucketed_batches_equal_single_texts(tiny_bert, texts_and_reference, pooling, devices):
  module, params, _ = tiny_bert
  token_ids, hidden = texts_and_reference
  batched = embed.embed_texts(module, params, token_ids, pooling=pooling, token_budget=128,
                              mesh=sharding.make_mesh(devices))
  for i, h in enumerate(hidden):
    np.testing.assert_allclose(batched[i], h.mean(0) if pooling == "mean" else h[-1], atol=1e-4)


def test_plan_batches_bounds_shapes_and_tokens():
  lengths = np.array([3, 17, 17, 40, 64, 65, 5, 128, 9])
  plan = embed.plan_batches(lengths, token_budget=128, multiple=2)
  covered = np.sort(np.concatenate([idx for *_, idx in plan]))
  np.testing.assert_array_equal(covered, np.arange(len(lengths)))
  for blen, rows, idx in plan:
    assert blen % embed.BUCKET == 0 and np.all(lengths[idx] <= blen)
    assert rows % 2 == 0 and len(idx) <= rows and rows * blen <= max(128, 2 * blen)
  # 3 items of length <= 16 fit one batch of 4 rows (a power of two), not 8.
  assert [(b, r) for b, r, _ in plan if b == 16] == [(16, 4)]


def test_cache_key_tracks_what_embeddings_depend_on(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  base = embed.cache_key(tmp_path, ["a", "b"], "mean", 128, "float32")
  assert base == embed.cache_key(tmp_path, ["a", "b"], "mean", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["a", "c"], "mean", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["a", "b"], "last", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["ab"], "mean", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["a", "b"], "mean", 64, "float32")
