"""load_hf_model rejects bad folders and checkpoints with clear JaxrecErrors."""

import json

import numpy as np
import pytest
from safetensors import numpy as st_numpy

from jaxrec.errors import JaxrecError
from jaxrec.llm import checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MISSING_KEY = "encoder.layer.1.attention.self.value.weight"


@pytest.fixture
def tiny_bert(tmp_path):
  """A saved tiny BertModel folder."""
  torch.manual_seed(0)
  config = transformers.BertConfig(
      vocab_size=50, hidden_size=16, num_hidden_layers=2,
      num_attention_heads=2, intermediate_size=24,
      max_position_embeddings=32)
  transformers.BertModel(config).save_pretrained(tmp_path)
  return tmp_path


def _edit_config(folder, **changes):
  path = folder / "config.json"
  path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_missing_folder(tmp_path):
  with pytest.raises(JaxrecError, match="model folder not found: .*nope"):
    checkpoint.load_hf_model(tmp_path / "nope")


def test_missing_config(tmp_path):
  with pytest.raises(JaxrecError, match="no config.json"):
    checkpoint.load_hf_model(tmp_path)


def test_unparsable_config(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(JaxrecError, match="cannot parse"):
    checkpoint.load_hf_model(tmp_path)


def test_unsupported_model_type(tiny_bert):
  _edit_config(tiny_bert, model_type="gpt2", architectures=["GPT2LMHeadModel"])
  with pytest.raises(JaxrecError, match="unsupported model_type 'gpt2'") as e:
    checkpoint.load_hf_model(tiny_bert)
  message = str(e.value)
  assert "\n" not in message and "GPT2LMHeadModel" in message
  for supported in ("bert", "llama", "mistral", "qwen2", "qwen3", "gemma2",
                    "gemma3_text", "gemma3", "baichuan"):
    assert f" {supported}," in message + ","


def test_missing_model_type(tiny_bert):
  _edit_config(tiny_bert, model_type=None)
  with pytest.raises(JaxrecError, match=r"unsupported model_type None .*"
                     "supported: bert, "):
    checkpoint.load_hf_model(tiny_bert)


def test_no_safetensors_file(tiny_bert):
  (tiny_bert / "model.safetensors").rename(tiny_bert / "pytorch_model.bin")
  with pytest.raises(JaxrecError, match="no model.safetensors"):
    checkpoint.load_hf_model(tiny_bert)


def test_missing_tensor_is_named(tiny_bert):
  path = tiny_bert / "model.safetensors"
  tensors = st_numpy.load_file(path)
  del tensors[MISSING_KEY]
  st_numpy.save_file(tensors, path)

  with pytest.raises(JaxrecError, match=f"lacks 1 .*'{MISSING_KEY}'"):
    checkpoint.load_hf_model(tiny_bert)


def test_shape_mismatch_is_named(tiny_bert):
  _edit_config(tiny_bert, intermediate_size=32)
  with pytest.raises(JaxrecError,
                     match=r"intermediate.dense.weight.*\(16, 24\).*"
                     r"expected \(16, 32\)"):
    checkpoint.load_hf_model(tiny_bert)


def test_param_count():
  params = {"a": {"kernel": np.zeros((3, 4))}, "b": np.zeros(5)}
  assert checkpoint.param_count(params) == 17
