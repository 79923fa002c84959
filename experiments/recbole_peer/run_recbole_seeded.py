"""Run ../shared/baselines/recbole/run_recbole.py unchanged except for its seed (fixed at 2020 there).

Used to measure RecBole's own seed spread on a row we compare against (ML-100K, 6 epochs):
a single seed of a peer is a sample, not the peer. The result file gets the tag `_seed<N>`, and
the checkpoint folder is `saved/seed<N>`: RecBole names its checkpoint by the start second, so two
runs started together wrote one file and both tested the later one (seen here; that run was redone).

usage: PEER_ROOT=/some/dir python run_recbole_seeded.py SEED MODEL DATASET [run_recbole.py flags]
"""
import pathlib
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[3] / "shared" / "baselines" / "recbole" / "run_recbole.py"


def main() -> None:
  seed, rest = int(sys.argv[1]), sys.argv[2:]
  src = SCRIPT.read_text()
  if src.count('"seed": 2020') != 1:
    raise SystemExit(f"{SCRIPT}: expected exactly one '\"seed\": 2020' to replace; the script changed")
  src = src.replace('"seed": 2020', f'"seed": {seed}')
  if src.count('f"{ROOT}/saved"') != 1:
    raise SystemExit(f"{SCRIPT}: expected one checkpoint_dir f\"{{ROOT}}/saved\"; the script changed")
  src = src.replace('f"{ROOT}/saved"', f'f"{{ROOT}}/saved/seed{seed}"')
  sys.argv = [str(SCRIPT)] + rest + ["--tag", f"_seed{seed}"]
  exec(compile(src, str(SCRIPT), "exec"), {"__name__": "__main__", "__file__": str(SCRIPT)})


if __name__ == "__main__":
  main()
