"""Amazon Books 2014: the paper's public benchmark, under HSTU's protocol (DESIGN.md section 2).

  python -m jaxrec.main --config=configs/amazon_books.py --workdir=/tmp/books

Data: `ratings_Books.csv` and `meta_Books.json.gz` (22.5M ratings, 8M users,
2.3M books in the metadata) in ../shared/data/amazon-books, or
--config.data.path=DIR; missing files stop the run with one message naming
the exact paths and download URLs. HSTU's preprocessing (users and items with
>= 5 ratings on the raw counts, ids remapped: 695,762 items; users left with
>= 5), history 50, leave-one-out, full ranking over the whole catalogue;
`--config.data.protocol=time_split` gives LEARN's industrial protocol
(`--config.eval.ks='(50,100)'`). Preprocessing streams: see
experiments/results/books_preprocess.md for its time and peak memory at the
real shape.

Model: the paper's PCH (12 layers, d = 768, 12 heads, BERT-base-like MLP) on
frozen Baichuan2-7B content (the paper's LLM; a local Hugging Face folder,
see DESIGN.md section 4), Adam at 5e-5, cosine with 10% warm-up, 10 epochs,
batch 240 = the paper's 30 per device x 8 devices. The objective is the one
the quality issue settled (next item at every position, the content recipe of
jaxrec/recipes.py); a 695k-item catalogue cannot afford the full softmax per
step on a small accelerator, so negatives are `mixed`: the batch's ~11k
positives (logQ-corrected) plus 8,192 uniformly sampled items.

Expected result (an estimate, not a measured run: the real files are not on
our machines): between SASRec and LEARN's published row of DESIGN.md
section 2 (HR@10 .0306-.0407, NDCG@10 .0164-.0224, HR@200 .14-.19).

Cost, estimated from FLOPs, not measured on an accelerator (none was at
hand): the train step of this config is 7.9 TFLOP (forward + backward,
counted analytically in experiments/bench_books_preprocess.py); measured on
the shared 2-core CPU at a reduced batch it runs at 24 GFLOP/s, so ~330 s a
step here (experiments/results/books_preprocess.md). An epoch is ~1,050
steps (synthetic data at the real shape), 10 epochs ~10.5k steps. At an
assumed 35% MFU: one H100 (f32 matmuls as TF32, 495 TFLOP/s peak) ~0.05 s a
step, ~10 minutes of training with the validations; a TPU v5e-8 (8 x 197
TFLOP/s) ~0.015 s a step, ~3 minutes. CEG dominates: Baichuan2-7B over 695k
item texts of ~130 tokens is ~1.3e18 FLOP, ~55 minutes on one H100 (bf16,
40% MFU), ~35 minutes on a v5e-8; it runs once, cached and resumable
(`python -m jaxrec.embed --config=configs/amazon_books.py`). Measured on the
2-core CPU at the real shape (experiments/results/books_tfds.md): the first
run preprocesses the raw files and writes the TFDS array_record dataset in
~3.5 minutes at 2.3 GiB peak RSS; later runs read it back and pack the
training rows in ~1.5 minutes at 2.1 GiB. `--config.data.input=stream`
holds no user's sequence: they are read from a flat memory-mapped copy of
that dataset as training and evaluation need them, 1.0 GiB for the same data
side (the first run's data stage, the copy included, takes ~1.5 minutes;
a full validation reads its 711k histories back in ~5 s).

Variant `:small` runs on a CPU in minutes on a sample in the real format:

  python -m jaxrec.data.books_synthetic --out=/tmp/jaxrec-books-sample
  python -m jaxrec.main --config=configs/amazon_books.py:small --workdir=/tmp/books-small
"""

import pathlib

from jaxrec import recipes
from jaxrec.errors import JaxrecError

# ../shared/data beside the checkout; override with --config.data.path=...
_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-books"
_SAMPLE = "/tmp/jaxrec-books-sample"     # python -m jaxrec.data.books_synthetic --out=/tmp/jaxrec-books-sample
_BAICHUAN = pathlib.Path(__file__).resolve().parents[2] / "shared" / "models" / "Baichuan2-7B-Base"


def get_config(variant: str = ""):
  if variant not in ("", "small"):
    raise JaxrecError(f"configs/amazon_books.py has variants '' (full) and 'small', not {variant!r}")
  c = recipes.get("content")
  c.data.kind = "amazon_books"
  c.data.path = str(_DATA)
  c.data.max_history = 50            # HSTU's protocol: history truncated to 50
  c.data.protocol = "leave_one_out"  # HSTU / HLLM / the paper's public table
  c.loss.negatives = "mixed"         # in-batch (logQ) + sampled: no full softmax over 695k items per step
  c.loss.num_sampled = 8192
  c.train.eval_every_epochs = 1.0
  c.train.patience = 3
  c.eval.user_chunk = 1024
  if variant == "small":
    c.data.path = _SAMPLE
    c.loss.num_sampled = 256
    c.train.batch_size = 32
    c.train.num_epochs = 4
    c.train.learning_rate = 1e-3
    c.train.schedule = "cosine"
    c.train.patience = 0
    return c                          # the content recipe's small PCH on MiniLM content
  c.ceg.model = str(_BAICHUAN)       # the paper's LLM, frozen; a local HF folder
  c.ceg.dtype = "bfloat16"
  c.ceg.max_tokens = 256
  c.ceg.store_dtype = "float16"      # 695k x 4096 content table: 5.7 GB on disk instead of 11.4
  c.model.d_model = c.model.d_out = 768   # the paper's PCH: BERT-base-like
  c.model.num_layers = 12
  c.model.num_heads = 12
  c.model.mlp_dim = 3072
  c.model.dropout = 0.1
  c.train.batch_size = 240           # the paper's 30 per device on 8 devices
  c.train.num_epochs = 10            # paper
  c.train.learning_rate = 5e-5       # paper
  c.train.schedule = "cosine"        # paper: cosine, 10% warm-up
  c.train.warmup_frac = 0.1
  return c
