"""config.validate: every field has a rule, and each rule rejects what the code cannot run with."""

import copy
import importlib.util
import json

import ml_collections
import pytest

from jaxrec import config as config_lib
from jaxrec.errors import JaxrecError

from test_main import ROOT

# For every field: values it must reject (type_safe is off below, so wrong
# types reach validate the way a hand-built config file could send them).
BAD = {
    "seed": [-1, 2**32, 1.5, "0"],
    "data.kind": ["csv", ""],
    "data.path": [3, None],
    "data.name": [3],
    "data.template": [None],
    "data.max_text_chars": [0, -5],
    "data.max_history": [0],
    "data.target_len": [0],
    "data.cut": ["first"],
    "method": ["train", ""],
    "data.window_stride": [-1, 1.5],
    "data.pack": ["yes", 1],
    "data.via_tfds": ["no", 0],
    "data.input": ["tfds", ""],
    "data.cold_items": [1.0, -0.1],
    "data.protocol": ["time", "loo"],
    "data.cut_quantile": [0.0, 1.0, "0.9"],
    "data.valid_users": [0.0, 0.6],
    "data.test_users": [0.0, 0.6],
    "data.cold_seed": [-1],
    "ceg.history_max_tokens": [1, 0],
    "ceg.history_item_chars": [0],
    "model.share_towers": ["no"],
    "model.normalize": [0],
    "model.adapter": ["mlp"],
    "model.adapter_experts": [0],
    "model.adapter_dropout": [1.0, -0.5],
    "model.fusion": ["add"],
    "model.id_dropout": [1.0],
    "model.id_init": ["zeros"],
    "model.norm": ["mid"],
    "model.init_std": [-0.02],
    "model.head": ["none"],
    "loss.objective": ["bpr"],
    "loss.negatives": ["all"],
    "loss.num_sampled": [0],
    "loss.logq": [1],
    "loss.full_chunk": [0],
    "train.schedule": ["linear"],
    "train.eval_every_epochs": [-1.0],
    "train.patience": [-1],
    "data.demo_users": [0],
    "data.demo_items": [29, 0],
    "ceg.model": ["", 3],
    "ceg.pooling": ["max"],
    "ceg.max_tokens": [0, 1],
    "ceg.token_budget": [-1, 100],         # 100 < max_tokens = 128 (0 is auto)
    "ceg.dtype": ["float16"],
    "ceg.mesh_model": [0, 1.5],
    "ceg.fsdp": ["yes"],
    "ceg.attention": ["flash"],
    "ceg.attention_impl": ["triton", None],
    "ceg.cache_dir": [0],
    "ceg.store_dtype": ["bfloat16", "float64"],
    "ceg.chunk_items": [0, 1.5],
    "ceg.normalize": ["minmax"],
    "model.item_input": ["words"],
    "model.item_tower": ["twin"],
    "model.d_model": [0, 63],              # 63 is not divisible by num_heads = 2
    "model.num_layers": [0],
    "model.num_heads": [0, -2, 3],         # 64 % 3 != 0
    "model.mlp_dim": [0],
    "model.d_out": [0],
    "model.dropout": [1.0, 1.5, -0.1, float("nan")],
    "loss.temperature": [0.0, -1.0, float("inf")],
    "loss.learn_temperature": [1, "yes"],
    "loss.max_logit_scale": [0.0, float("nan")],
    "loss.mask_duplicates": [0],
    "train.batch_size": [0],
    "train.num_epochs": [0, 2.5],
    "train.learning_rate": [0.0, -1e-3, float("nan")],
    "train.warmup_frac": [-0.1, 1.5],
    "train.warmup_epochs": [-1.0, "2"],
    "train.weight_decay": [-1.0],
    "train.grad_clip": [-1.0, float("inf")],
    "train.eval_every": [0],
    "train.log_every": [0],
    "train.checkpoint": ["False"],
    "eval.ks": [(), ("(10,abc)",), (0, 10), (10, 10), (10, 2.5), 10],
    "eval.user_chunk": [0],
    "eval.select": ["NDCG@20", "MRR@10", 10],
    "eval.item_chunk": [0, 1.5],
    "eval.shard_items": ["yes", 1],
    "eval.approx_recall": [1.0, -0.1, float("nan")],
    "eval.partial_users": [-1, 2.5],
    "eval.partial_seed": [-1, 2**32],
    "mesh.num_devices": [0, -2],
    "train.keep_checkpoints": [0, 1.5],
    "dist.coordinator": ["localhost", "http://h:1", 3],
    "dist.num_processes": [-1, 1.5],
    "dist.process_id": [-2, "0"],
    "dist.timeout_seconds": [0],
}


def test_every_field_has_a_rule_and_a_bad_value_test():
  fields = set(config_lib.flat_fields(config_lib.base_config()))
  assert fields == set(config_lib.RULES)
  assert fields == set(BAD)


@pytest.mark.parametrize("name", ["demo", "office", "amazon_books", "amazon_books:small"])
def test_shipped_configs_are_valid(name):
  name, _, variant = name.partition(":")
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config_lib.validate(module.get_config(variant) if variant else module.get_config())


def test_time_split_rejects_the_cold_item_protocol():
  c = _with("data.protocol", "time_split")
  c.data.cold_items = 0.1
  with pytest.raises(JaxrecError, match="cold_items"):
    config_lib.validate(c)


def test_grain_input_rejects_the_dense_all_action_objective():
  c = _with("data.input", "grain")
  c.loss.objective = "dense_all_action"
  with pytest.raises(JaxrecError, match="data.input='grain'"):
    config_lib.validate(c)


def test_stream_input_names_what_it_needs():
  c = _with("data.input", "stream")                 # on the default synthetic_demo
  c.loss.objective = "next_item"
  with pytest.raises(JaxrecError, match="input='stream'.*not synthetic_demo"):
    config_lib.validate(c)
  c.data.kind, c.data.path, c.data.via_tfds, c.data.cold_items = "lcrec_json", "/data/office", False, 0.1
  with pytest.raises(JaxrecError, match=r"needs data.via_tfds=True, data.cold_items=0 \("):
    config_lib.validate(c)
  c.data.via_tfds, c.data.cold_items = True, 0.0
  config_lib.validate(c)
  c.data.protocol = "time_split"
  with pytest.raises(JaxrecError, match=r"input='stream'.*needs data.protocol='leave_one_out' \("):
    config_lib.validate(c)


def _with(path: str, value) -> ml_collections.ConfigDict:
  d = config_lib.base_config().to_dict()
  section, _, key = path.rpartition(".")
  (d[section] if section else d)[key] = value
  return ml_collections.ConfigDict(d, type_safe=False)


@pytest.mark.parametrize("path,value", [(p, v) for p, vs in BAD.items() for v in vs])
def test_bad_value_is_one_clear_error(path, value):
  with pytest.raises(JaxrecError) as e:
    config_lib.validate(_with(path, value))
  message = str(e.value)
  assert "\n" not in message
  # The message names the field at fault (or, for cross-field rules, the field it depends on).
  key = path.rpartition(".")[2]
  assert key in message, message


def test_unknown_and_missing_fields_are_rejected():
  d = config_lib.base_config().to_dict()
  d["train"]["learning_rat"] = 1e-3
  with pytest.raises(JaxrecError, match=r"config.train.learning_rat is not a jaxrec config field"):
    config_lib.validate(ml_collections.ConfigDict(d))
  d = config_lib.base_config().to_dict()
  del d["eval"]["user_chunk"]
  with pytest.raises(JaxrecError, match=r"config.eval.user_chunk is missing"):
    config_lib.validate(ml_collections.ConfigDict(d))
  with pytest.raises(JaxrecError, match="ConfigDict"):
    config_lib.validate({"seed": 0})


def test_good_edge_values_pass():
  for path, value in [("seed", 2**32 - 1), ("model.dropout", 0.0), ("train.warmup_frac", 1.0),
                      ("train.grad_clip", 0.0), ("eval.ks", (10,)), ("mesh.num_devices", -1),
                      ("ceg.max_tokens", 2), ("ceg.token_budget", 128), ("data.demo_items", 30),
                      ("eval.ks", [10, 50, 200])]:
    config_lib.validate(_with(path, value))


def test_changed_fields_accepts_fields_added_since_at_their_default():
  """A run stored before a field existed resumes while the field holds its default."""
  current = json.loads(config_lib.base_config().to_json_best_effort())
  assert config_lib.changed_fields(current, current) == []
  old = copy.deepcopy(current)
  del old["eval"]["item_chunk"]                 # added later, at its default now: the same run
  assert config_lib.changed_fields(old, current) == []
  moved = copy.deepcopy(current)
  moved["eval"]["item_chunk"] = current["eval"]["item_chunk"] * 2
  assert config_lib.changed_fields(old, moved) == ["eval.item_chunk"]   # not the default: changed
  gone = copy.deepcopy(current)
  gone["train"]["retired_field"] = 1            # a field this jaxrec does not know
  assert config_lib.changed_fields(gone, current) == ["train.retired_field"]
  lr = copy.deepcopy(current)
  lr["train"]["learning_rate"] = 0.5
  assert config_lib.changed_fields(current, lr) == ["train.learning_rate"]


def test_reading_through_tfds_or_directly_is_the_same_run():
  """data.via_tfds changes how the files are read, not what is read, and ceg.token_budget how CEG
  batches the texts; data.input changes the batches."""
  current = json.loads(config_lib.base_config().to_json_best_effort())
  direct = copy.deepcopy(current)
  direct["data"]["via_tfds"] = not current["data"]["via_tfds"]
  assert config_lib.changed_fields(current, direct) == []
  batched = copy.deepcopy(current)                 # a run stored before the auto CEG budget
  batched["ceg"]["token_budget"] = 8192
  assert config_lib.changed_fields(batched, current) == []
  streamed = copy.deepcopy(current)
  streamed["data"]["input"] = "grain" if current["data"]["input"] != "grain" else "memory"
  assert config_lib.changed_fields(current, streamed) == ["data.input"]
