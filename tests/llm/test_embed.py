"""CEG: bucketed, sharded, padded batches give the embeddings of one-at-a-time
unpadded forward passes; the cache is keyed and reused."""

import json

import numpy as np
import pytest
import torch
import transformers

from jaxrec import sharding
from jaxrec.llm import embed, store
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


def test_auto_token_budget_resolves_per_backend_and_keeps_the_vectors(tiny_bert, texts_and_reference,
                                                                     monkeypatch):
  assert embed.resolve_token_budget(300) == 300
  assert embed.resolve_token_budget(0) == embed.CPU_TOKEN_BUDGET            # these tests run on CPU
  monkeypatch.setattr(embed.jax, "default_backend", lambda: "gpu")
  assert embed.resolve_token_budget(0) == embed.ACCELERATOR_TOKEN_BUDGET
  monkeypatch.undo()
  module, params, _ = tiny_bert
  token_ids, hidden = texts_and_reference
  auto = embed.embed_texts(module, params, token_ids, pooling="mean", token_budget=0,
                           mesh=sharding.make_mesh(1))
  for i, h in enumerate(hidden):
    np.testing.assert_allclose(auto[i], h.mean(0), atol=1e-4)


def test_cache_key_tracks_what_embeddings_depend_on(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  base = embed.cache_key(tmp_path, ["a", "b"], "mean", 128, "float32")
  assert base == embed.cache_key(tmp_path, ["a", "b"], "mean", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["a", "c"], "mean", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["a", "b"], "last", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["ab"], "mean", 128, "float32")
  assert base != embed.cache_key(tmp_path, ["a", "b"], "mean", 64, "float32")


# ----------------------------------------------------------------------------
# The cache: a damaged entry is reported and recomputed, never used or a crash.
# The model is faked (the cache logic does not depend on it); the command-line
# test in tests/test_reliability.py does the same with the real MiniLM.
# ----------------------------------------------------------------------------

TEXTS = ["red mug", "blue pen", "green lamp"]


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
  folder = tmp_path / "fake-model"
  folder.mkdir()
  (folder / "config.json").write_text('{"max_position_embeddings": 64}')
  calls = []
  def fake_embed(module, params, token_ids, **kwargs):
    calls.append(len(token_ids))
    return np.arange(len(token_ids) * 4, dtype=np.float32).reshape(len(token_ids), 4)
  import jaxrec.llm.checkpoint as hf_checkpoint
  monkeypatch.setattr(hf_checkpoint, "load_hf_model", lambda *a, **k: (None, None, None))
  monkeypatch.setattr(embed, "tokenize", lambda d, texts, m: [[1, 2]] * len(texts))
  monkeypatch.setattr(embed, "embed_texts", fake_embed)
  return folder, calls


def _embed(folder, cache):
  return embed.content_embeddings(TEXTS, model=str(folder), cache_dir=cache, max_tokens=32,
                                  mesh=sharding.make_mesh(1), label="t")


def _entry(cache):
  """The store's one chunk (3 texts < one chunk)."""
  (path,) = cache.glob("t-*/chunks/*.npy")
  return path


def _store(cache):
  (folder,) = cache.glob("t-*")
  return store.load_store(folder)


def _sidecar(path):
  return path.with_suffix(".json")


def _garbage_with_nan(path):
  np.save(path, np.full((3, 4), np.nan, np.float32))


def _valid_checksum_but_nan(path):
  np.save(path, np.full((3, 4), np.nan, np.float32))
  manifest = _sidecar(path)
  data = json.loads(manifest.read_text())
  data["sha256"] = store.sha256_file(path)
  manifest.write_text(json.dumps(data))


DAMAGE = {
    "zero-byte": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "garbage bytes": lambda p: p.write_bytes(b"\x93NUMPY garbage" * 20),
    "overwritten with NaN": _garbage_with_nan,
    "other finite values": lambda p: np.save(p, np.ones((3, 4), np.float32)),
    "NaN under a matching checksum": _valid_checksum_but_nan,
    "manifest missing, entry truncated": lambda p: (_sidecar(p).unlink(),
                                                    p.write_bytes(p.read_bytes()[:100])),
    "manifest missing, entry NaN": lambda p: (_sidecar(p).unlink(), _garbage_with_nan(p)),
    "manifest garbage": lambda p: _sidecar(p).write_text("{not json"),
    "manifest of another shape": lambda p: _sidecar(p).write_text(
        json.dumps({**json.loads(_sidecar(p).read_text()), "shape": [2, 4]})),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_entry_is_reported_and_recomputed(fake_model, tmp_path, caplog, damage):
  folder, calls = fake_model
  cache = tmp_path / "cache"
  first = _embed(folder, cache)
  assert calls == [3] and _sidecar(_entry(cache)).exists()
  np.testing.assert_array_equal(_embed(folder, cache), first)    # a good entry is reused
  assert calls == [3]
  DAMAGE[damage](_entry(cache))
  with caplog.at_level("WARNING", logger="jaxrec"):
    again = _embed(folder, cache)
  assert calls == [3, 3]                                            # recomputed
  np.testing.assert_array_equal(again, first)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "damaged" in warnings[0] and "recomputing" in warnings[0]
  assert _store(cache).check_chunk(0, warn=False)                   # repaired on disk


def test_half_written_chunk_of_a_killed_run_is_ignored(fake_model, tmp_path, caplog):
  """A kill inside np.save leaves a temporary file (never the chunk itself): not read, removed."""
  folder, calls = fake_model
  cache = tmp_path / "cache"
  first = _embed(folder, cache)
  entry = _entry(cache)
  tmp = entry.with_name(entry.name + ".tmp.npy")
  tmp.write_bytes(entry.read_bytes()[:50])
  entry.unlink()
  with caplog.at_level("WARNING", logger="jaxrec"):
    np.testing.assert_array_equal(_embed(folder, cache), first)
  assert calls == [3, 3] and not tmp.exists()
  assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("damage", ["garbage", "other chunk size"])
def test_damaged_store_manifest_is_reported_and_recomputed(fake_model, tmp_path, caplog, damage):
  folder, calls = fake_model
  cache = tmp_path / "cache"
  first = _embed(folder, cache)
  manifest = _store(cache).manifest_path
  if damage == "garbage":
    manifest.write_text("{not json")
  else:
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "chunk_size": 2}))
  with caplog.at_level("WARNING", logger="jaxrec"):
    np.testing.assert_array_equal(_embed(folder, cache), first)
  assert calls == [3, 3]
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "manifest" in warnings[0] and "recomputing" in warnings[0]
  assert _store(cache).missing_chunks() == []


def test_legacy_single_file_entry_moves_into_the_store(fake_model, tmp_path):
  """A cache entry of an older jaxrec (one .npy + manifest) is verified and reused, not recomputed."""
  folder, calls = fake_model
  cache = tmp_path / "cache"
  cache.mkdir()
  key = embed.cache_key(folder, TEXTS, "mean", 32, "float32")
  table = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
  embed.save_cached(cache / f"t-{folder.name}-{key}.npy", table)
  np.testing.assert_array_equal(_embed(folder, cache), table)
  assert calls == []
  assert _store(cache).missing_chunks() == [] and not list(cache.glob("*.npy"))


def test_max_tokens_beyond_the_model_positions_is_an_error(fake_model, tmp_path):
  folder, _ = fake_model
  with pytest.raises(embed.JaxrecError, match="max_position_embeddings=64"):
    embed.content_embeddings(TEXTS, model=str(folder), cache_dir=tmp_path, max_tokens=65,
                             mesh=sharding.make_mesh(1))


def test_chunk_without_checksum_file_is_checked_and_adopted(fake_model, tmp_path, caplog):
  """A kill between writing a chunk and its checksum file does not cost the chunk."""
  folder, calls = fake_model
  cache = tmp_path / "cache"
  first = _embed(folder, cache)
  _sidecar(_entry(cache)).unlink()
  with caplog.at_level("WARNING", logger="jaxrec"):
    np.testing.assert_array_equal(_embed(folder, cache), first)
  assert calls == [3]                                               # not recomputed
  assert any("has no checksum file" in r.getMessage() for r in caplog.records)
  assert _sidecar(_entry(cache)).exists()

