"""Attention paths: jax.nn.dot_product_attention (XLA here) against the reference einsum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.errors import JaxrecError
from jaxrec.llm import bert
from jaxrec.llm import decoder
from jaxrec.llm import layers
import llm_parity

TINY = dict(vocab_size=llm_parity.VOCAB, hidden_size=32, intermediate_size=48,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
CASES = {
    "causal_gqa": {},
    "causal_window": dict(sliding_window=3),
    "bidirectional_window": dict(sliding_window=3, causal=False),
    "alibi": dict(position="alibi"),
    "bidirectional": dict(causal=False),
}


def _hidden(module_cls, config, attention, ids, mask):
  module = module_cls(config, attention=attention, implementation="xla")
  params = module.init(jax.random.key(0), ids, mask)["params"]
  # Random, not zero-ish, params so masking mistakes show.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params)
  return np.asarray(jax.jit(module.apply)({"params": params}, ids, mask))


@pytest.mark.parametrize("case", sorted(CASES))
def test_decoder_fast_path_matches_reference(case):
  config = decoder.DecoderConfig(**TINY, **CASES[case])
  ids, mask = llm_parity.padded_batch(length=10, real_second=6)
  fast = _hidden(decoder.Decoder, config, "dot_product_attention", ids, mask)
  ref = _hidden(decoder.Decoder, config, "reference", ids, mask)
  llm_parity.assert_close_on_real(fast, ref, mask, atol=1e-5, label=f"attention {case}")


def test_bert_fast_path_matches_reference():
  config = bert.BertConfig(vocab_size=llm_parity.VOCAB, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=48, max_position_embeddings=16)
  ids, mask = llm_parity.padded_batch(length=10, real_second=6)
  fast = _hidden(bert.BertEncoder, config, "dot_product_attention", ids, mask)
  ref = _hidden(bert.BertEncoder, config, "reference", ids, mask)
  llm_parity.assert_close_on_real(fast, ref, mask, atol=1e-5, label="attention bert")


def test_fast_path_ignores_padding_keys():
  """Changing padded tokens must not move real tokens' states (the lengths are honoured)."""
  config = decoder.DecoderConfig(**TINY, causal=False)
  ids, mask = llm_parity.padded_batch(length=10, real_second=6)
  other = ids.copy()
  other[1, 6:] = 7
  a = _hidden(decoder.Decoder, config, "dot_product_attention", ids, mask)
  b = _hidden(decoder.Decoder, config, "dot_product_attention", other, mask)
  np.testing.assert_allclose(a[1, :6], b[1, :6], atol=1e-6)


def test_attention_path_falls_back_where_the_fast_path_cannot_apply():
  path = layers.attention_path
  assert path("reference", "auto", jnp.float32) == ("reference", None)
  assert path("dot_product_attention", "auto", jnp.float32) == ("dot_product_attention", "xla")
  # Soft-capping (Gemma 2) and float64 have no fast path.
  assert path("dot_product_attention", "auto", jnp.float32, softcap=50.0) == ("reference", None)
  assert path("dot_product_attention", "xla", jnp.float64) == ("reference", None)
  # cuDNN asked for but impossible here (CPU; ALiBi bias; fp32): XLA instead.
  assert path("dot_product_attention", "cudnn", jnp.bfloat16) == ("dot_product_attention", "xla")
  assert path("dot_product_attention", "cudnn", jnp.bfloat16, bias=True)[1] == "xla"
  with pytest.raises(JaxrecError, match="attention path"):
    path("flash", "auto", jnp.float32)
  with pytest.raises(JaxrecError, match="implementation"):
    path("dot_product_attention", "triton", jnp.float32)


def test_softcapped_decoder_runs_the_reference_path_under_either_setting():
  config = decoder.DecoderConfig(**TINY, attn_logit_softcap=5.0)
  ids, mask = llm_parity.padded_batch()
  fast = _hidden(decoder.Decoder, config, "dot_product_attention", ids, mask)
  ref = _hidden(decoder.Decoder, config, "reference", ids, mask)
  np.testing.assert_array_equal(fast, ref)
