r"""CEG throughput: jaxrec (JAX/Flax) against transformers PyTorch, same texts, same batches.

For each model (MiniLM = BERT, SmolLM2 = Llama-style LLM) the Office item texts
are tokenised once and planned once per token budget (`embed.plan_batches`:
length-sorted, token-budget batches over a few bucketed shapes; `--token_budgets`
gives one row each, 0 = jaxrec's default for the backend); both frameworks then embed
exactly those padded batches with mean pooling, in one process. After jaxrec's
first pass (it compiles one program per shape) and PyTorch's warm-up batch, the
timed pass alternates: each batch is embedded by jaxrec, then by PyTorch, so a
change of load on a shared machine falls on both alike (the ratio is the
measurement; absolute tokens/s move with the load). Reported: real tokens/s of
each (padding excluded), their ratio, the ratio including jaxrec's compilation,
the same by sequence length (where the time goes), the padding share, the
largest difference between the two frameworks' vectors, and MFU (model FLOPs /
s over the device's peak; a peak-FLOPs table for GPUs/TPUs, `--peak_tflops`
for a CPU).

GPU-ready: on an accelerator `--dtype=auto` runs bf16 in both frameworks (torch on
cuda), and jaxrec's attention takes cuDNN (`ceg.attention_impl=auto`).

  nice -n 5 python experiments/bench_ceg_throughput.py --items=600 \
      --out=experiments/results/ceg_throughput
"""

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from tqdm.auto import tqdm

from jaxrec import sharding, train
from jaxrec.files import atomic_write_json
from jaxrec.llm import checkpoint, embed, gguf_checkpoint, llama

REPO = pathlib.Path(__file__).resolve().parents[1]
# Dense bf16 peak FLOP/s by device kind (substring of jax's device_kind), from vendor sheets.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
              "A10G": 70e12, "V100": 125e12, "TPU v6": 918e12, "TPU v5p": 459e12,
              "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v4": 275e12}


def office_texts(data_path: str | None) -> list[str]:
  spec = importlib.util.spec_from_file_location("office_config", REPO / "configs" / "office.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("")
  if data_path:
    config.data.path = data_path
  dataset, _, _ = train.load_data(config)
  return train.item_texts(config, dataset)


def peak_flops(override_tflops: float) -> float | None:
  if override_tflops:
    return override_tflops * 1e12
  kind = jax.devices()[0].device_kind
  return next((v for k, v in PEAK_FLOPS.items() if k.lower() in kind.lower()), None)


def model_flops(module, params, plan) -> float:
  """Forward FLOPs over the planned (padded) batches: 2 per weight per token (embedding
  tables are gathers, not matmuls) + 4 * layers * length * attention width per token."""
  cfg = module.config
  dense = sum(int(np.prod(x.shape)) for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
              if len(x.shape) == 2 and "embedding" not in str(path[-1]))
  width = cfg.num_attention_heads * cfg.head_dim
  return float(sum(rows * blen * (2 * dense + 4 * cfg.num_hidden_layers * blen * width)
                   for blen, rows, _ in plan))


def torch_model(model_dir: pathlib.Path, module, params, dtype, device):
  """transformers' own model with the same weights: the HF folder itself, or (GGUF) a
  LlamaModel filled from the weights jaxrec dequantised, so both read identical numbers."""
  if not gguf_checkpoint.is_gguf(model_dir):
    model = transformers.AutoModel.from_pretrained(model_dir, dtype=dtype)
  else:
    cfg = module.config
    if cfg.rope.type != "default" or cfg.position != "rope":
      sys.exit(f"{model_dir}: only plain-RoPE GGUF models are mirrored in PyTorch here")
    model = transformers.LlamaModel(transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps, hidden_act=cfg.hidden_act,
        max_position_embeddings=cfg.max_position_embeddings, attention_bias=cfg.qkv_bias,
        mlp_bias=cfg.mlp_bias, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope.theta}))
    flat = {tuple(k.key for k in path): np.asarray(x, np.float32)
            for path, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    state = {src.key: torch.from_numpy(np.ascontiguousarray(flat[path].T if src.transpose else flat[path]))
             for path, src in llama.key_map(cfg).items()}
    model.load_state_dict(state, strict=True)
  return model.to(device=device, dtype=dtype).eval()


def torch_batch(model, ids: np.ndarray, mask: np.ndarray, device) -> np.ndarray:
  """Mean-pooled float32 embeddings of one padded batch, by transformers."""
  with torch.inference_mode():
    ids_t = torch.from_numpy(ids.astype(np.int64)).to(device)
    mask_t = torch.from_numpy(mask.astype(np.int64)).to(device)
    hidden = model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state.float()
    m = mask_t.unsqueeze(-1).float()
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).cpu().numpy()


def interleaved(module, params, model, token_ids, plan, mesh, device) -> dict:
  """Both frameworks over the same batches, alternating batch by batch: their vectors and
  seconds, in all and by padded sequence length."""
  ours = theirs = None
  by_length: dict[int, list[float]] = {}    # length -> [jaxrec s, PyTorch s, real tokens]
  for blen, rows, idx in plan:
    ids, mask = embed.padded_batch(token_ids, idx, rows, blen)
    start = time.perf_counter()
    a = embed.embed_batch(module, params, ids, mask, pooling="mean", mesh=mesh)
    mid = time.perf_counter()
    b = torch_batch(model, ids, mask, device)
    end = time.perf_counter()
    if ours is None:
      ours, theirs = (np.zeros((len(token_ids), a.shape[1]), np.float32) for _ in range(2))
    ours[idx], theirs[idx] = a[:len(idx)], b[:len(idx)]
    t = by_length.setdefault(int(blen), [0.0, 0.0, 0])
    t[0] += mid - start
    t[1] += end - mid
    t[2] += int(mask.sum())
  return {"ours": ours, "theirs": theirs, "by_length": by_length,
          "jaxrec_s": sum(t[0] for t in by_length.values()),
          "torch_s": sum(t[1] for t in by_length.values())}


def bench(name: str, texts: list[str], args) -> list[dict]:
  """One row per token budget (args.token_budgets) for this model, loaded once."""
  model_dir = embed.resolve_model_dir(name)
  dtype = embed.resolve_dtype(args.dtype)
  token_ids = embed.tokenize(model_dir, texts, args.max_tokens)
  lengths = np.array([len(t) for t in token_ids])
  tokens = int(lengths.sum())
  mesh = sharding.make_mesh(1)
  jdtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
  module, params, _ = checkpoint.load_hf_model(model_dir, jdtype, jdtype,
                                               attention_impl=args.attention_impl)
  params = sharding.put_replicated(params, mesh)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  tdtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
  model = torch_model(model_dir, module, params, tdtype, device)
  quiet = tqdm(disable=True)
  rows = []
  budgets = dict.fromkeys(embed.resolve_token_budget(b) for b in args.token_budgets)   # 0 may be 8192
  for budget in budgets:
    requested = budget if budget in args.token_budgets else 0
    jax.clear_caches()                # each budget's "incl. compile" pass compiles all of its shapes
    plan = embed.plan_batches(lengths, budget, 1)
    start = time.perf_counter()
    embed.embed_texts(module, params, token_ids, pooling="mean", token_budget=budget, mesh=mesh,
                      bar=quiet)                      # compiles one program per shape
    jax_first = time.perf_counter() - start
    torch_batch(model, *embed.padded_batch(token_ids, plan[0][2], plan[0][1], plan[0][0]), device)  # warm-up
    timed = interleaved(module, params, model, token_ids, plan, mesh, device)
    ours, theirs, jax_steady, torch_s = timed["ours"], timed["theirs"], timed["jaxrec_s"], timed["torch_s"]
    flops, peak = model_flops(module, params, plan), peak_flops(args.peak_tflops)
    mfu = lambda s: None if peak is None else round(flops / s / peak, 4)
    cos = np.sum(ours * theirs, 1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    rows.append({
        "model": name, "token_budget": budget, "token_budget_requested": requested,
        "items": len(texts), "real_tokens": tokens,
        "padded_tokens": int(sum(b * r for b, r, _ in plan)),
        "padding_fraction": round(embed.padding_fraction(lengths, plan), 4),
        "batches": len(plan), "shapes": len({(b, r) for b, r, _ in plan}),
        "dtype": dtype, "jaxrec_first_pass_s": round(jax_first, 2),
        "jaxrec_s": round(jax_steady, 2), "torch_s": round(torch_s, 2),
        "jaxrec_tokens_per_s": round(tokens / jax_steady, 1),
        "jaxrec_first_pass_tokens_per_s": round(tokens / jax_first, 1),
        "torch_tokens_per_s": round(tokens / torch_s, 1),
        "ratio": round(torch_s / jax_steady, 2), "ratio_with_compile": round(torch_s / jax_first, 2),
        "max_abs_diff": float(np.abs(ours - theirs).max()), "min_cosine": float(cos.min()),
        "model_tflops": round(flops / 1e12, 3), "jaxrec_mfu": mfu(jax_steady), "torch_mfu": mfu(torch_s),
        "by_length": [{"length": blen, "real_tokens": n, "jaxrec_s": round(a, 3), "torch_s": round(b, 3),
                       "ratio": round(b / a, 2)} for blen, (a, b, n) in sorted(timed["by_length"].items())]})
    print(json.dumps(rows[-1]), flush=True)
  return rows


def best_of_each(rows: list[dict]) -> list[dict]:
  """Per model: jaxrec at its fastest budget against PyTorch at its fastest (each framework's best
  batch policy, which need not be the same one)."""
  out = []
  for name in dict.fromkeys(r["model"] for r in rows):
    mine = [r for r in rows if r["model"] == name]
    j = max(mine, key=lambda r: r["jaxrec_tokens_per_s"])
    t = max(mine, key=lambda r: r["torch_tokens_per_s"])
    out.append({"model": name, "jaxrec_budget": j["token_budget"], "jaxrec_tokens_per_s": j["jaxrec_tokens_per_s"],
                "torch_budget": t["token_budget"], "torch_tokens_per_s": t["torch_tokens_per_s"],
                "ratio": round(j["jaxrec_tokens_per_s"] / t["torch_tokens_per_s"], 2)})
  return out


def markdown(rows: list[dict], env: dict, command: str) -> str:
  fmt = lambda v: "n/a" if v is None else f"{v:.1%}"
  lines = [
      "# CEG throughput: jaxrec vs transformers PyTorch", "",
      f"Command: `{command}`", "",
      f"Device: {env['device']} ({env['backend']}), torch {env['torch']} on {env['torch_threads']} "
      f"threads, jax {env['jax']}, {env['when']}. Same texts (Office item texts), same tokens, "
      "same padded batches, mean pooling; tokens/s counts real tokens.", "",
      "| model | token budget | items | real tokens | padding | batches / shapes | dtype | jaxrec tok/s | "
      "jaxrec tok/s incl. compile | PyTorch tok/s | ratio (jaxrec / PyTorch) | ratio incl. compile | "
      "max abs diff | jaxrec MFU | PyTorch MFU |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['model']} | {r['token_budget']} | {r['items']} | {r['real_tokens']} | {r['padding_fraction']:.1%} | "
        f"{r['batches']} / {r['shapes']} | {r['dtype']} | {r['jaxrec_tokens_per_s']:.0f} | "
        f"{r['jaxrec_first_pass_tokens_per_s']:.0f} | {r['torch_tokens_per_s']:.0f} | "
        f"{r['ratio']:.2f}x | {r['ratio_with_compile']:.2f}x | {r['max_abs_diff']:.2g} | "
        f"{fmt(r['jaxrec_mfu'])} | {fmt(r['torch_mfu'])} |")
  lines += ["", "Each framework at its fastest token budget of those run (its own best batch policy):", "",
            "| model | jaxrec budget | jaxrec tok/s | PyTorch budget | PyTorch tok/s | ratio |",
            "|---|---|---|---|---|---|"]
  lines += [f"| {b['model']} | {b['jaxrec_budget']} | {b['jaxrec_tokens_per_s']:.0f} | {b['torch_budget']} | "
            f"{b['torch_tokens_per_s']:.0f} | {b['ratio']:.2f}x |" for b in best_of_each(rows)]
  for r in rows:
    lines += ["", f"{r['model']}, token budget {r['token_budget']}, by padded sequence length (timed pass):", "",
              "| length | real tokens | jaxrec s | PyTorch s | ratio |", "|---|---|---|---|---|"]
    lines += [f"| {b['length']} | {b['real_tokens']} | {b['jaxrec_s']:.2f} | {b['torch_s']:.2f} | "
              f"{b['ratio']:.2f}x |" for b in r["by_length"]]
  return "\n".join(lines) + "\n"


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default="minilm,smollm2")
  p.add_argument("--items", type=int, default=0, help="0: the whole catalogue; else an even sample")
  p.add_argument("--max_tokens", type=int, default=128)
  p.add_argument("--token_budgets", default="0,8192",
                 help="comma-separated tokens per batch, one row each; 0: jaxrec's default for this backend")
  p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
  p.add_argument("--attention_impl", default="auto", choices=["auto", "xla", "cudnn"])
  p.add_argument("--peak_tflops", type=float, default=0.0, help="peak FLOP/s of this device (CPU)")
  p.add_argument("--data_path", default=None)
  p.add_argument("--out", default="experiments/results/ceg_throughput")
  args = p.parse_args()
  args.token_budgets = [int(b) for b in args.token_budgets.split(",")]
  texts = office_texts(args.data_path)
  if args.items:
    texts = [texts[i] for i in np.linspace(0, len(texts) - 1, args.items).astype(int)]
  env = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
         "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
         "machine": platform.machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "load_average_at_start": round(os.getloadavg()[0], 2)}
  rows = []
  for name in args.models.split(","):
    rows += bench(name, texts, args)
  command = "python " + " ".join(["experiments/bench_ceg_throughput.py"] + sys.argv[1:])
  out = pathlib.Path(args.out)
  atomic_write_json(out.with_suffix(".json"), {"env": env, "command": command, "rows": rows,
                                                "best_of_each": best_of_each(rows)})
  out.with_suffix(".md").write_text(markdown(rows, env, command))
  print(markdown(rows, env, command))


if __name__ == "__main__":
  main()
