"""Real data (../shared/data): on Amazon Office the SASRec-equivalent learns what
RecBole's SASRec learns, and frozen MiniLM content + IDs beats IDs alone, at
the same short training budget (validation only; test is for reports)."""

import importlib.util
import pathlib

import pytest

from jaxrec import train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def office(variant: str, shared_data, tmp_path):
  spec = importlib.util.spec_from_file_location("office_config", ROOT / "configs" / "office.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(variant)
  c.data.path = str(shared_data / "amazon-office")
  c.train.num_epochs = 12
  c.train.eval_every_epochs = 12.0
  c.train.checkpoint = False
  c.ceg.cache_dir = str(tmp_path.parent / "office-ceg-cache")   # shared by the tests of this session
  return c


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
  out = {}
  for variant in ("sasrec", "learn"):
    wd = tmp_path_factory.mktemp(variant)
    out[variant] = train.train_and_evaluate(office(variant, shared_data, wd), wd)
  return out


def test_sasrec_equivalent_learns_office(runs):
  # RecBole's SASRec reaches valid NDCG@10 0.057 after 6 of its epochs (0.069 after 8);
  # ours logged 0.063 after 12 epochs. Popularity is at 0.0004.
  assert runs["sasrec"]["valid"]["NDCG@10"] > 0.05
  assert runs["sasrec"]["valid"]["NDCG@10"] > 20 * runs["sasrec"]["popularity_test"]["NDCG@10"]


def test_content_plus_id_beats_id_alone_on_validation(runs):
  assert runs["learn"]["valid"]["NDCG@10"] > 1.05 * runs["sasrec"]["valid"]["NDCG@10"]
