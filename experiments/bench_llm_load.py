r"""A 7B-shaped checkpoint loads shard by shard: each process holds its share, never the model.

Writes (once) a random-weight Llama-2-7B-shaped Hugging Face checkpoint in bf16
(hidden 4096, MLP 11008, 32 heads, vocabulary 32000, untied `lm_head`, which
jaxrec does not read; `--layers` keeps the per-layer shapes and cuts the
depth) as ~2 GB safetensors shards with `model.safetensors.index.json`. The
writer never holds a tensor, let alone the model: every tensor is a window of
one random bf16 pool, passed to safetensors' `serialize_file` as a pointer
(`TensorSpec`), which streams it to the file.

Then it loads the checkpoint with `checkpoint.load_hf_model(..., mesh, fsdp=True)`
in fresh processes on a (data=2, model=4) mesh of 8 CPU devices: 2 processes
(jax.distributed on localhost, 4 devices each, so FSDP leaves half of every
matrix on each process) and the 1-process baseline (8 devices, the whole model
on one host). Each process reports the parameter bytes on its devices, the
LoadStats, its peak RSS (VmHWM, ru_maxrss) and wall time; this driver samples
each child's RssAnon from /proc every 10 ms for the peak *anonymous* RSS (the
memory-mapped shards are file pages the kernel can drop, the parameters are
not). Every process checks a few of its blocks against the file.

  nice -n 5 python experiments/bench_llm_load.py --folder=/work/scratch-bigload/llama7b \
      --layers=32 --out=experiments/results/llm_load --delete
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxrec import files  # noqa: E402
from jaxrec.errors import JaxrecError  # noqa: E402

GB = 1e9
# Llama-2-7b-hf's config.json, less what the loader ignores.
LLAMA2_7B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32,
             "num_hidden_layers": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
             "tie_word_embeddings": False, "torch_dtype": "bfloat16",
             "bos_token_id": 1, "eos_token_id": 2}
# A shape where every dimension splits over data=2 and model=4, for the test.
TINY = {**LLAMA2_7B, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 8,
        "num_key_value_heads": 8, "vocab_size": 96, "max_position_embeddings": 64}


def llama_config(layers: int, base: dict[str, Any] = LLAMA2_7B) -> dict[str, Any]:
  return {**base, "num_hidden_layers": layers}


def hf_tensors(config: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
  """(name, shape) of every tensor of a LlamaForCausalLM checkpoint, in file order."""
  h, m, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
  kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
  out = [("model.embed_tokens.weight", (v, h))]
  for i in range(config["num_hidden_layers"]):
    p = f"model.layers.{i}."
    out += [(p + "input_layernorm.weight", (h,)), (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)), (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)), (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (m, h)), (p + "mlp.up_proj.weight", (m, h)),
            (p + "mlp.down_proj.weight", (h, m))]
  return out + [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def write_checkpoint(folder: pathlib.Path, config: dict[str, Any], shard_bytes: float = 2e9,
                     seed: int = 0) -> dict[str, Any]:
  """Writes the checkpoint unless `folder` already holds this one; returns its summary.

  Each tensor is a window (at a random offset) of one pool of random bf16
  values (finite, |x| in [1/128, 1/64)), so the writer's memory is the pool,
  about the largest tensor, whatever the model's size. config.json is written
  last: a folder without it is an interrupted write and is redone.
  """
  import safetensors  # noqa: PLC0415
  tensors = hf_tensors(config)
  sizes = [2 * int(np.prod(shape)) for _, shape in tensors]
  if (folder / "config.json").is_file():
    if json.loads((folder / "config.json").read_text()) != config:
      raise JaxrecError(f"{folder} holds a different checkpoint; pass another --folder or delete it")
    return {"folder": str(folder), "bytes": sum(sizes), "written": False}
  folder.mkdir(parents=True, exist_ok=True)
  largest = max(sizes) // 2
  rng = np.random.default_rng(seed)
  pool = rng.integers(0, 1 << 16, size=largest + largest // 2, dtype=np.uint16)
  pool = (pool & 0x807F) | 0x3C00       # random sign and mantissa, exponent 2^-7: never inf/NaN
  shards, current, filled = [], [], 0
  for (name, shape), size in zip(tensors, sizes):
    if current and filled + size > shard_bytes:
      shards.append(current)
      current, filled = [], 0
    current.append((name, shape, size))
    filled += size
  shards.append(current)
  weight_map = {}
  start = time.perf_counter()
  for i, shard in enumerate(shards):
    file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    specs = {}
    for name, shape, size in shard:
      offset = int(rng.integers(0, len(pool) - size // 2 + 1))
      specs[name] = safetensors.TensorSpec(dtype="bfloat16", shape=list(shape),
                                           data_ptr=pool.ctypes.data + 2 * offset, data_len=size)
      weight_map[name] = file
    safetensors.serialize_file(specs, str(folder / file), metadata={"format": "pt"})
  files.atomic_write_json(folder / "model.safetensors.index.json",
                          {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}, indent=1)
  files.atomic_write_json(folder / "config.json", config, indent=1)
  return {"folder": str(folder), "bytes": sum(sizes), "shards": len(shards), "written": True,
          "writer_pool_bytes": int(pool.nbytes), "write_seconds": round(time.perf_counter() - start, 1)}


def proc_status(pid: int | str = "self") -> dict[str, int]:
  """VmRSS, VmHWM, RssAnon, RssFile of a process, in bytes (0 once it has exited)."""
  out = {}
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
          out[name] = int(value.split()[0]) * 1024
  except (FileNotFoundError, ProcessLookupError):
    pass
  return out


class PeakSampler:
  """Samples a process's RssAnon from /proc every `period` s, from a thread, and keeps the peak.

  The kernel keeps a peak for the whole RSS (VmHWM) but not for its anonymous
  part, which is what the loaded parameters are.
  """

  def __init__(self, pid: int | str = "self", period: float = 0.01):
    self.pid, self.period, self.peak_anon = pid, period, 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self) -> None:
    while not self._stop.is_set():
      self.peak_anon = max(self.peak_anon, proc_status(self.pid).get("RssAnon", 0))
      self._stop.wait(self.period)

  def __enter__(self) -> "PeakSampler":
    self._thread.start()
    return self

  def __exit__(self, *exc: Any) -> None:
    self._stop.set()
    self._thread.join()


def check_blocks(params: dict[str, Any], folder: pathlib.Path, key_map: Any, prefix: str = "model.",
                 paths: tuple[tuple[str, ...], ...] = ()) -> int:
  """Compares this process's shards of a few parameters with the file, read independently.

  Returns the number of blocks compared; raises on the first that differs.
  """
  from safetensors import safe_open  # noqa: PLC0415
  weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
  checked = 0
  for path in paths:
    src = key_map[path]
    leaf = params
    for name in path:
      leaf = leaf[name]
    with safe_open(folder / weight_map[prefix + src.key], framework="numpy") as f:
      tensor = f.get_slice(prefix + src.key)
      for shard in leaf.addressable_shards:
        index = tuple(slice(*s.indices(n)[:2]) for s, n in zip(shard.index, leaf.shape))
        want = tensor[index[::-1]].T if src.transpose else tensor[index]
        got = np.asarray(shard.data)
        if got.shape != want.shape or not np.array_equal(got.view(np.uint16), want.view(np.uint16)):
          raise AssertionError(f"{'/'.join(path)} block {index} on {shard.device} differs from the file")
        checked += 1
  return checked


def load_and_measure(folder: pathlib.Path, mesh_model: int = 4) -> dict[str, Any]:
  """Loads `folder` on a (data, model) mesh over all (global) devices with FSDP; what this process held."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  from jaxrec.llm import checkpoint, partitioning  # noqa: PLC0415
  before = proc_status()
  mesh = partitioning.make_mesh(jax.devices(), mesh_model)
  stats = checkpoint.LoadStats()
  start = time.perf_counter()
  with PeakSampler() as sampler:
    module, params, hf_config = checkpoint.load_hf_model(folder, dtype=jnp.bfloat16,
                                                         param_dtype=jnp.bfloat16, mesh=mesh,
                                                         fsdp=True, stats=stats)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
  after = proc_status()
  last = hf_config["num_hidden_layers"] - 1
  _, key_map, _ = checkpoint.build_model(hf_config, jnp.bfloat16, jnp.bfloat16)
  checked = check_blocks(params, folder, key_map, paths=(
      ("embed_tokens", "embedding"), ("layers_0", "self_attn", "q_proj", "kernel"),
      (f"layers_{last}", "mlp", "down_proj", "kernel"), (f"layers_{last}", "input_layernorm", "scale")))
  held = sum(partitioning.bytes_per_device(params).values())
  return {"process": jax.process_index(), "processes": jax.process_count(),
          "local_devices": jax.local_device_count(), "mesh": dict(mesh.shape),
          "param_bytes_total": partitioning.total_bytes(params), "param_bytes_here": held,
          "reads": stats.reads, "bytes_read": stats.bytes_read, "largest_read": stats.largest_read,
          "seconds": round(seconds, 1), "rss_anon_before": before.get("RssAnon", 0),
          "rss_anon_after": after.get("RssAnon", 0), "peak_anon_self_sampled": sampler.peak_anon,
          "vm_hwm": after.get("VmHWM", 0),
          "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
          "blocks_checked": checked}


def worker(args: argparse.Namespace) -> None:
  """One loading process (spawned by `run_processes` with its XLA_FLAGS set)."""
  import jax  # noqa: PLC0415
  if args.num_processes > 1:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  row = load_and_measure(pathlib.Path(args.folder), args.mesh_model)
  if args.num_processes > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices("bench_llm_load:done")   # nobody leaves early
  print(json.dumps(row), flush=True)


def run_processes(folder: pathlib.Path, processes: int, devices: int = 8, mesh_model: int = 4,
                  logs: pathlib.Path | None = None) -> list[dict[str, Any]]:
  """Loads in `processes` fresh processes with devices/processes CPU devices each; one row per process."""
  with socket.socket() as free:
    free.bind(("localhost", 0))
    coordinator = f"localhost:{free.getsockname()[1]}"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices // processes}"}
  logs = logs or folder.parent
  children = []
  for pid in range(processes):
    out, err = logs / f"load-{processes}p-{pid}.out", logs / f"load-{processes}p-{pid}.err"
    with open(out, "w") as o, open(err, "w") as e:   # files, not pipes: a full pipe would block
      proc = subprocess.Popen(
          [sys.executable, __file__, "--worker", f"--folder={folder}", f"--coordinator={coordinator}",
           f"--num_processes={processes}", f"--process_id={pid}", f"--mesh_model={mesh_model}"],
          stdout=o, stderr=e, env=env, cwd=ROOT)
    sampler = PeakSampler(proc.pid).__enter__()
    children.append((proc, sampler, out, err))
  rows = []
  for proc, sampler, out, err in children:
    proc.wait()
    sampler.__exit__()
    if proc.returncode:
      raise SystemExit(f"loading process failed ({proc.returncode}):\n{err.read_text()[-3000:]}")
    row = json.loads([l for l in out.read_text().splitlines() if l.startswith("{")][-1])  # not Gloo's
    rows.append({**row, "peak_anon": max(sampler.peak_anon, row["peak_anon_self_sampled"])})
  return rows


COLUMNS = ("processes", "process", "local_devices", "param_bytes_here", "largest_read", "bytes_read",
           "rss_anon_before", "peak_anon", "vm_hwm", "ru_maxrss", "seconds", "blocks_checked")


def table(rows: list[dict[str, Any]]) -> str:
  """Markdown table, bytes in GB."""
  def cell(k, v):
    return f"{v / GB:.2f}" if k in COLUMNS[3:10] else str(v)
  head = [c + (" (GB)" if c in COLUMNS[3:10] else "") for c in COLUMNS]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  return "\n".join(lines + ["| " + " | ".join(cell(c, r[c]) for c in COLUMNS) + " |" for r in rows])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--folder", required=True, help="scratch folder for the checkpoint (never the repo)")
  p.add_argument("--layers", type=int, default=32, help="decoder layers (7B: 32), shapes unchanged")
  p.add_argument("--out", default="", help="write <out>.json and <out>.md")
  p.add_argument("--delete", action="store_true", help="delete the checkpoint afterwards")
  p.add_argument("--skip_baseline", action="store_true", help="only the 2-process load")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--coordinator", default="", help=argparse.SUPPRESS)
  p.add_argument("--num_processes", type=int, default=1, help=argparse.SUPPRESS)
  p.add_argument("--process_id", type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument("--mesh_model", type=int, default=4, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    return worker(args)
  folder = pathlib.Path(args.folder).resolve()
  if ROOT in folder.parents:
    raise SystemExit(f"--folder={folder} is inside the repository; use a scratch folder")
  written = write_checkpoint(folder, llama_config(args.layers))
  print(f"checkpoint {folder}: {written['bytes'] / GB:.2f} GB", flush=True)
  rows = run_processes(folder, 2)
  if not args.skip_baseline:
    rows += run_processes(folder, 1)
  model_bytes = rows[0]["param_bytes_total"]
  print(f"parameters jaxrec loads: {model_bytes / GB:.2f} GB (bf16); file: {written['bytes'] / GB:.2f} GB")
  print(table(rows))
  if args.out:
    out = pathlib.Path(args.out)
    files.atomic_write_json(out.with_suffix(".json"), {
        "command": " ".join(sys.argv), "layers": args.layers, "checkpoint": written,
        "param_bytes": model_bytes, "rows": rows}, indent=1)
    out.with_suffix(".md").write_text(report(args, written, rows))
  if args.delete:
    shutil.rmtree(folder)


def report(args: argparse.Namespace, written: dict[str, Any], rows: list[dict[str, Any]]) -> str:
  """The md: command, checkpoint, table, and the claim checked against the numbers."""
  model = rows[0]["param_bytes_total"]
  lines = [f"# Loading a Llama-2-7B-shaped checkpoint shard by shard ({args.layers} layers)", "",
           "    nice -n 5 python experiments/bench_llm_load.py " + " ".join(sys.argv[1:]), "",
           f"Checkpoint: {written['bytes'] / GB:.2f} GB of bf16 safetensors (with the untied lm_head, "
           f"which jaxrec does not read); the parameters jaxrec loads: {model / GB:.2f} GB. "
           "Mesh (data=2, model=4) over 8 CPU devices, FSDP. Bytes in GB (1e9).", "", table(rows), ""]
  for r in rows:
    lines.append(f"- {r['processes']} process(es), process {r['process']}: holds "
                 f"{r['param_bytes_here'] / model:.3f} of the model, peak anonymous RSS "
                 f"{r['peak_anon'] / model:.3f} of the model ({(r['peak_anon'] - r['param_bytes_here']) / GB:+.2f} GB "
                 f"beyond its parameters), largest host read {r['largest_read'] / 2**20:.1f} MiB.")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
