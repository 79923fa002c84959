"""Item text rendering: segment dropping, caps, fallback, template errors."""

import dataclasses

import pytest

from jaxrec.data import lcrec_json
from jaxrec.data import prompts
from jaxrec.data import synthetic
from jaxrec.errors import JaxrecError

_TEMPLATE = prompts.DEFAULT_TEMPLATES["lcrec_json"]


def _fields(**kwargs):
  fields = {"title": "", "brand": "", "categories": "", "description": ""}
  fields.update(kwargs)
  return fields


def test_empty_fields_drop_their_segment():
  text = prompts.render_item_text(
      _fields(title="Blue Pen", categories="Office, Pens"), _TEMPLATE, 500)
  assert text == "Title: Blue Pen. Categories: Office, Pens"
  text = prompts.render_item_text(
      _fields(brand="Bic", description="Writes well."), _TEMPLATE, 500)
  assert text == "Brand: Bic. Description: Writes well."


def test_no_double_period_and_whitespace_collapsed():
  text = prompts.render_item_text(
      _fields(title="Pens  Inc.", brand=" Bic\n\tCo "), _TEMPLATE, 500)
  assert text == "Title: Pens Inc. Brand: Bic Co"


def test_html_is_stripped_lightly():
  text = prompts.render_item_text(
      _fields(title="AT&amp;T Phone",
              description="<p>Big&nbsp;<b>buttons</b></p><br/>&quot;Hi&quot;"),
      _TEMPLATE, 500)
  assert text == 'Title: AT&T Phone. Description: Big buttons "Hi"'


def test_cap_at_word_boundary():
  fields = _fields(title="Alpha Beta Gamma Delta")
  full = prompts.render_item_text(fields, _TEMPLATE, 500)
  assert full == "Title: Alpha Beta Gamma Delta"
  assert prompts.render_item_text(fields, _TEMPLATE, 20) == "Title: Alpha Beta"
  assert prompts.render_item_text(fields, _TEMPLATE, 23) == (
      "Title: Alpha Beta Gamma")
  assert prompts.cap_text("abcdefgh", 5) == "abcde"  # no space: hard cut
  assert prompts.cap_text("Title: a, b", 9) == "Title: a"
  for n in range(1, len(full) + 2):
    assert len(prompts.render_item_text(fields, _TEMPLATE, n)) <= n


def test_all_empty_falls_back_to_item_id():
  fields = _fields(description="<br> &nbsp; ")
  assert prompts.fill_template(fields, _TEMPLATE) == ""
  assert prompts.render_item_text(fields, _TEMPLATE, 100, item_id="42") == (
      "Item 42")


def test_template_errors():
  with pytest.raises(
      JaxrecError, match=r"field 'color'.*available fields: brand, categories"):
    prompts.render_item_text(_fields(), "Color: {color}", 100)
  with pytest.raises(JaxrecError, match="is malformed"):
    prompts.render_item_text(_fields(), "Title: {title", 100)
  with pytest.raises(JaxrecError, match="must be a plain field name"):
    prompts.render_item_text(_fields(), "Title: {title.upper}", 100)
  with pytest.raises(JaxrecError, match="names no fields"):
    prompts.render_item_text(_fields(), "Just text", 100)
  with pytest.raises(JaxrecError, match="max_chars must be >= 1"):
    prompts.render_item_text(_fields(title="x"), _TEMPLATE, 0)


def test_render_all_counts_fallbacks():
  demo = synthetic.make_demo(num_users=5, num_items=40)
  texts, num_fallback = prompts.render_all(
      demo, prompts.DEFAULT_TEMPLATES["synthetic_demo"], 200)
  assert num_fallback == 0 and len(texts) == 40
  assert all(t.startswith("Title: ") and len(t) <= 200 for t in texts)
  with pytest.raises(JaxrecError, match="field 'genres'"):
    prompts.render_all(demo, "Genres: {genres}", 200)
  unbranded = ({**demo.item_fields[0], "brand": ""},) + demo.item_fields[1:]
  blank = dataclasses.replace(demo, item_fields=unbranded)
  texts, num_fallback = prompts.render_all(blank, "Brand: {brand}", 200)
  assert num_fallback == 1 and texts[0] == "Item 0"
  assert texts[1] == f"Brand: {demo.item_fields[1]['brand']}"


def test_real_office_texts(shared_data):
  office = lcrec_json.load(shared_data / "amazon-office")
  texts, num_fallback = prompts.render_all(office, _TEMPLATE, 512)
  assert num_fallback == 0  # every Office item has categories
  assert all(0 < len(t) <= 512 for t in texts)
  untitled = [i for i, f in enumerate(office.item_fields) if not f["title"]]
  assert len(untitled) == 3
  for i in untitled:
    assert texts[i].startswith("Categories: ")
  assert not any("<xml>" in t or "&amp;" in t for t in texts)
