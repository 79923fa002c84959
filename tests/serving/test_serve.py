"""python -m jaxrec.serve (jaxrec/serve.py; here to share the tiny trained run): build, add, remove, export."""

import json

import pytest

from jaxrec import serve
from jaxrec.errors import JaxrecError


def test_cli_build_add_remove_export(trained_run, tmp_path, capsys):
  folder = tmp_path / "serving"
  common = [f"--workdir={trained_run}", f"--serving_dir={folder}"]
  serve.run(["build", *common, "--target_recall=0.9"])
  built = json.loads(capsys.readouterr().out)
  assert built["index"]["mode"] == "brute_force" and built["index_report"]["target_recall"] == 0.9
  items = tmp_path / "new.jsonl"
  items.write_text(json.dumps({"id": "cli-1", "title": "Laser pointer"}) + "\n\n" +
                   json.dumps({"id": "cli-2", "text": "A box of pencils"}) + "\n")
  serve.run(["add", *common, f"--items={items}"])
  assert [s["status"] for s in json.loads(capsys.readouterr().out)] == ["added", "added"]
  serve.run(["add", *common, "--id=cli-1", "--text=A green laser pointer"])
  assert json.loads(capsys.readouterr().out) == [{"id": "cli-1", "status": "updated"}]
  serve.run(["remove", *common, "--id=cli-2"])
  capsys.readouterr()
  serve.run(["export", *common, f"--out={tmp_path / 'export'}"])
  info = json.loads(capsys.readouterr().out)
  ids = json.loads((tmp_path / "export" / "items.json").read_text())["ids"]
  assert "cli-1" in ids and "cli-2" not in ids and info["items"] == len(ids) == built["items"] + 1


def test_cli_errors_are_one_line(tmp_path, trained_run):
  with pytest.raises(JaxrecError, match="no serving folder"):
    serve.run(["add", f"--workdir={trained_run}", f"--serving_dir={tmp_path / 'none'}", "--id=x", "--text=y"])
  with pytest.raises(JaxrecError, match="config.json"):
    serve.run(["build", f"--workdir={tmp_path}"])
  with pytest.raises(JaxrecError, match="target_recall"):
    serve.run(["build", f"--workdir={trained_run}", f"--serving_dir={tmp_path / 's'}", "--target_recall=2"])
