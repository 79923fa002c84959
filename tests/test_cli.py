"""The end-of-run summary (the command line itself is tested in test_main.py and
test_reliability.py)."""

from jaxrec import cli


def _results(**extra):
  test = {"HR@10": 0.1, "Recall@10": 0.1, "NDCG@10": 0.05, "HR@200": 0.9, "NDCG@200": 0.2,
          "HR@50": 0.5, "NDCG@50": 0.1, "Recall@50": 0.5}
  return {"test": test, "popularity_test": {k: v / 2 for k, v in test.items()},
          "config": {"eval": {"select": "NDCG@10"}}, **extra}


def test_summary_orders_metrics_by_k_with_best_step_and_popularity():
  text = cli.summary(_results(valid={"NDCG@10": 0.04}, best_step=30, total_steps=90), "/w")
  lines = text.splitlines()
  assert lines[0] == "best step 30 of 90 (valid NDCG@10=0.0400); test metrics at that step:"
  assert lines[1].split() == ["HR@10", "HR@50", "HR@200", "NDCG@10", "NDCG@50", "NDCG@200"]
  assert lines[2].split() == ["test", "0.1000", "0.5000", "0.9000", "0.0500", "0.1000", "0.2000"]
  assert lines[3].split()[:2] == ["popularity", "0.0500"]
  assert lines[4] == "results: /w/results.json"


def test_summary_without_validation():
  lines = cli.summary(_results(valid=None), "/w").splitlines()
  assert lines[0] == "test metrics:" and lines[2].startswith("test")
