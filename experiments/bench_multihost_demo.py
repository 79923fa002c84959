"""Issue 10's check, through the command line: configs/demo.py (the paper recipe, 150
steps) gives the same test metrics on 1 device, on 8 fake devices, as 2 processes x 4
fake devices through experiments/tpu_vm/launch.sh --local 2, and as 2 processes
stopped mid-training by SIGTERM or SIGKILL and re-run with the same --workdir.

  python experiments/bench_multihost_demo.py --out=experiments/results/multihost_demo

writes <out>.json and <out>.md (a table of test metrics, and the largest difference
from the 1-device run). Scratch workdirs go under --scratch; the CEG cache is shared
by the runs (computed once, by the first), so the runs differ in training and
evaluation only. Takes about half an hour on 2 busy CPU cores.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = [f"--config={ROOT / 'configs' / 'demo.py'}:paper", "--config.train.eval_every_epochs=0",
          "--config.train.log_every=1"]
LAUNCH = ["bash", str(ROOT / "experiments" / "tpu_vm" / "launch.sh"), "--local", "2", "--"]


def env(devices: int) -> dict:
  flags = f"--xla_force_host_platform_device_count={devices}" if devices > 1 else ""
  return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable,
          "PYTHONPATH": str(ROOT)}


def command(workdir: pathlib.Path, processes: int) -> list[str]:
  flags = [*CONFIG, f"--workdir={workdir}"]
  return [*LAUNCH, *flags] if processes > 1 else [sys.executable, "-m", "jaxrec.main", *flags]


def logged_steps(workdir: pathlib.Path) -> int:
  try:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
  except FileNotFoundError:
    return 0
  return sum(1 for l in lines if '"loss"' in l)


def run(workdir, processes, devices, log, stop=None):
  """One run; with stop=(signal, step), the signal goes to the whole run at that step."""
  start = time.time()
  with open(log, "a") as f:
    proc = subprocess.Popen(command(workdir, processes), cwd=ROOT, env=env(devices), stdout=f,
                            stderr=f, start_new_session=True)
    if stop is not None:
      sig, step = stop
      while proc.poll() is None and logged_steps(workdir) < step:
        time.sleep(0.1)
      if sig == signal.SIGKILL:   # a crash of every process: the process group
        os.killpg(proc.pid, signal.SIGKILL)
      else:                        # a preemption notice: the launcher passes it on
        proc.send_signal(sig)
    rc = proc.wait()
  return rc, round(time.time() - start, 1)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "multihost_demo"))
  p.add_argument("--scratch", default="/tmp/jaxrec-multihost-demo")
  args = p.parse_args()
  scratch = pathlib.Path(args.scratch)
  shutil.rmtree(scratch, ignore_errors=True)
  scratch.mkdir(parents=True)
  os.environ["JAXREC_CACHE"] = str(scratch / "cache")
  rows = []
  cases = [("1 device", 1, 1, None), ("8 fake devices", 1, 8, None),
           ("2 processes x 4 fake devices (launch.sh --local 2)", 2, 4, None),
           ("2 x 4, SIGTERM at step 60, re-run", 2, 4, (signal.SIGTERM, 60)),
           ("2 x 4, SIGKILL (every process) at step 110, re-run", 2, 4, (signal.SIGKILL, 110))]
  for i, (name, processes, devices, stop) in enumerate(cases):
    workdir, log = scratch / f"run{i}", scratch / f"run{i}.log"
    rcs, seconds = [], 0.0
    if stop is not None:
      rc, s = run(workdir, processes, devices, log, stop)
      rcs.append(rc)
      seconds += s
    rc, s = run(workdir, processes, devices, log)
    rcs.append(rc)
    seconds += s
    results = json.loads((workdir / "results.json").read_text()) if rc == 0 else {}
    rows.append({"run": name, "exit_codes": rcs, "seconds": seconds, "test": results.get("test"),
                 "best_step": results.get("best_step")})
    print(name, rcs, results.get("test"), flush=True)
  base = rows[0]["test"]
  for r in rows:
    r["max_abs_diff_vs_1_device"] = (max(abs(r["test"][k] - base[k]) for k in base)
                                     if r["test"] and base else None)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
  keys = ["HR@10", "HR@50", "HR@200", "NDCG@10", "NDCG@50", "NDCG@200"]
  lines = ["# configs/demo.py:paper on 1 device, 8 fake devices, 2 processes x 4, and resumed",
           "", "Command: `python experiments/bench_multihost_demo.py` (CPU, 150 steps, shared CEG cache).", "",
           "| run | exit codes | best step | " + " | ".join(keys) + " | max abs diff vs 1 device | seconds |",
           "|---|---|---|" + "---|" * len(keys) + "---|---|"]
  for r in rows:
    t = r["test"] or {}
    diff = r["max_abs_diff_vs_1_device"]
    lines.append(f"| {r['run']} | {', '.join(map(str, r['exit_codes']))} | {r['best_step']} | "
                 + " | ".join(f"{t[k]:.4f}" if k in t else "-" for k in keys)
                 + f" | {'-' if diff is None else f'{diff:.2e}'} | {r['seconds']} |")
  out.with_suffix(".md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
