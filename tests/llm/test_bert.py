"""BertEncoder + load_hf_model against transformers' PyTorch BertModel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.errors import JaxrecError
from jaxrec.llm import bert
from jaxrec.llm import checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 99


def _tiny_config(**overrides) -> "transformers.BertConfig":
  kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, type_vocab_size=2)
  return transformers.BertConfig(**(kw | overrides))


def _perturb_(model: "torch.nn.Module") -> None:
  """Makes biases and LayerNorm params non-trivial, so mapping bugs show."""
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "LayerNorm" in name and name.endswith("weight"):
        p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
      elif name.endswith("bias"):
        p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def _padded_batch():
  """Two right-padded rows of different lengths, with token types."""
  rng = np.random.default_rng(0)
  ids = rng.integers(1, VOCAB, size=(2, 9)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 5:] = 0
  ids[1, 5:] = 0
  types = np.zeros_like(ids)
  types[:, 4:] = 1
  types[1, 5:] = 0
  return ids, mask, types


def _torch_hidden(model, ids, mask, types) -> np.ndarray:
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids).long(),
                attention_mask=torch.from_numpy(mask).long(),
                token_type_ids=torch.from_numpy(types).long())
  return out.last_hidden_state.numpy()


def _assert_close_on_real(ours, ref, mask, atol=1e-4):
  real = mask.astype(bool)
  diff = np.abs(np.asarray(ours, np.float32)[real] - ref[real]).max()
  print(f"\nPARITY bert max abs diff {diff:.3g} (atol {atol})")
  assert diff <= atol, f"max abs diff {diff} > {atol}"


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_matches_torch_bert_model(tmp_path, hidden_act):
  torch.manual_seed(0)
  ref = transformers.BertModel(_tiny_config(hidden_act=hidden_act)).eval()
  _perturb_(ref)
  ref.save_pretrained(tmp_path)

  module, params, hf_config = checkpoint.load_hf_model(tmp_path)

  assert isinstance(module, bert.BertEncoder)
  assert hf_config["model_type"] == "bert"
  ids, mask, types = _padded_batch()
  ours = jax.jit(module.apply)({"params": params}, ids, mask, types)
  assert ours.shape == (2, 9, 32) and ours.dtype == jnp.float32
  _assert_close_on_real(ours, _torch_hidden(ref, ids, mask, types), mask)


def test_masked_lm_checkpoint_loads_with_prefix(tmp_path):
  torch.manual_seed(0)
  ref = transformers.BertForMaskedLM(_tiny_config()).eval()
  _perturb_(ref)
  ref.save_pretrained(tmp_path)

  module, params, _ = checkpoint.load_hf_model(tmp_path)

  ids, mask, types = _padded_batch()
  ours = module.apply({"params": params}, ids, mask, types)
  _assert_close_on_real(ours, _torch_hidden(ref.bert, ids, mask, types), mask)
  # Pooler and MLM head are not part of the encoder.
  assert checkpoint.param_count(params) == sum(
      p.numel() for n, p in ref.bert.named_parameters())


def test_bfloat16_activations_stay_close(tmp_path):
  torch.manual_seed(0)
  ref = transformers.BertModel(_tiny_config(), add_pooling_layer=False).eval()
  ref.save_pretrained(tmp_path)
  ids, mask, types = _padded_batch()

  module, params, _ = checkpoint.load_hf_model(
      tmp_path, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)

  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
  ours = module.apply({"params": params}, ids, mask, types)
  assert ours.dtype == jnp.bfloat16
  _assert_close_on_real(ours, _torch_hidden(ref, ids, mask, types), mask,
                        atol=0.1)


def test_config_from_hf_rejects_relative_positions():
  with pytest.raises(JaxrecError, match="position_embedding_type"):
    bert.BertConfig.from_hf({"position_embedding_type": "relative_key"})
