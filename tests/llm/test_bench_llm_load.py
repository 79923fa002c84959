"""experiments/bench_llm_load.py on a tiny Llama shape in this process, so the benchmark cannot rot."""

import argparse
import importlib.util
import json
import pathlib

import jax
import pytest

from jaxrec.errors import JaxrecError

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_llm_load", ROOT / "experiments" / "bench_llm_load.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_writes_a_sharded_checkpoint_and_loads_half_of_it_per_data_row(tmp_path):
  folder = tmp_path / "llama"
  config = bench.llama_config(2, bench.TINY)
  written = bench.write_checkpoint(folder, config, shard_bytes=30_000)
  index = json.loads((folder / "model.safetensors.index.json").read_text())
  assert written["shards"] > 1 and len(set(index["weight_map"].values())) == written["shards"]
  assert set(index["weight_map"]) == {name for name, _ in bench.hf_tensors(config)}
  assert "lm_head.weight" in index["weight_map"]            # 7B's untied head, unread
  assert bench.write_checkpoint(folder, config)["written"] is False   # reused, not rewritten
  with pytest.raises(JaxrecError, match="different checkpoint"):
    bench.write_checkpoint(folder, bench.llama_config(3, bench.TINY))

  assert len(jax.devices()) == 8
  row = bench.load_and_measure(folder)
  assert row["mesh"] == {"data": 2, "model": 4}
  # One process holds every device here: the whole model, matrices split 8 ways plus the
  # replicated norm scales on every device; each distinct block is read once.
  assert row["param_bytes_here"] > row["param_bytes_total"]
  assert row["bytes_read"] == row["param_bytes_total"]
  assert row["largest_read"] == 64 * 128 * 2 // 8           # an eighth of an MLP matrix
  assert row["blocks_checked"] == 4 * 8
  assert row["peak_anon_self_sampled"] > 0 and row["vm_hwm"] > 0
  md = bench.report(argparse.Namespace(layers=2), written, [{**row, "peak_anon": row["peak_anon_self_sampled"]}])
  assert "| 1 | 0 | 8 |" in md and "holds 1.0" in md


def test_check_blocks_catches_a_wrong_block(tmp_path):
  folder = tmp_path / "llama"
  bench.write_checkpoint(folder, bench.llama_config(1, bench.TINY))
  from jaxrec.llm import checkpoint, partitioning
  module, params, hf = checkpoint.load_hf_model(folder, mesh=partitioning.make_mesh(jax.devices(), 4),
                                                fsdp=True, dtype=jax.numpy.bfloat16,
                                                param_dtype=jax.numpy.bfloat16)
  _, key_map, _ = checkpoint.build_model(hf)
  swapped = dict(params, layers_0=dict(params["layers_0"], self_attn=dict(
      params["layers_0"]["self_attn"], q_proj=params["layers_0"]["self_attn"]["o_proj"])))
  with pytest.raises(AssertionError, match="q_proj"):
    bench.check_blocks(swapped, folder, key_map, paths=(("layers_0", "self_attn", "q_proj", "kernel"),))
