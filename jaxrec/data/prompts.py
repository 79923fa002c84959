"""Item fields -> the one text string the frozen LLM embeds for each item.

Template rule: a template is `str.format` text split into segments at ". ".
A segment whose placeholders are all empty for an item is dropped, so items
with no brand read "Title: X. Categories: Y", not "Title: X. Brand: .
Categories: Y". Segments without placeholders are kept. Kept segments are
rejoined with ". " (just " " after a segment that already ends in . ! or ?).

Fallback: when every field the template names is empty, the text is
"Item <item id>", so the item still gets an embedding; `render_all` counts
these so the caller can log them.
"""

import html
import re
import string

from jaxrec.data.dataset import RecDataset
from jaxrec.errors import JaxrecError

# Keyed by registry kind.
DEFAULT_TEMPLATES: dict[str, str] = {
    "amazon_books": ("Title: {title}. Categories: {categories}. Brand: {brand}. Price: {price}. "
                     "Sales rank: {sales_rank}. Description: {description}"),
    "lcrec_json": ("Title: {title}. Brand: {brand}. Categories: {categories}. "
                   "Description: {description}"),
    "movielens_100k": "Title: {title}. Genres: {genres}",
    "movielens_latest_small": "Title: {title}. Genres: {genres}. Tags: {tags}",
    "synthetic_demo": ("Title: {title}. Brand: {brand}. Category: {category}. "
                       "Description: {description}"),
}

_SEPARATOR = ". "
# Markup seen in real product text (Amazon descriptions carry pasted HTML and
# even MS Word XML); removed lightly, not parsed.
_HIDDEN_BLOCKS = re.compile(
    r"<(xml|style|script)\b.*?</\1\s*>|<!--.*?-->", re.DOTALL | re.IGNORECASE)
_CONDITIONALS = re.compile(r"<!\[[^\]]*\]>|\[(?:if [^\]]*|endif)\]>?",
                           re.IGNORECASE)
_TAGS = re.compile(r"</?[A-Za-z][^<>]*>|<!-*")  # Tags, stray comment openers.


def clean_field(value: str) -> str:
  """Unescapes entities, strips tags, collapses whitespace."""
  for _ in range(3):  # Some descriptions are escaped more than once.
    unescaped = html.unescape(value)
    if unescaped == value:
      break
    value = unescaped
  value = _HIDDEN_BLOCKS.sub(" ", value)
  value = _CONDITIONALS.sub(" ", value)
  value = _TAGS.sub(" ", value)
  return " ".join(value.split())


def template_fields(template: str) -> tuple[str, ...]:
  """Distinct field names the template uses, in order of first use."""
  names = []
  for segment in template.split(_SEPARATOR):
    for name in _segment_fields(template, segment):
      if name not in names:
        names.append(name)
  return tuple(names)


def check_template(template: str, available) -> None:
  """Raises unless every field the template names is available."""
  available = sorted(available)
  names = template_fields(template)
  if not names:
    raise JaxrecError(f"prompt template {template!r} names no fields")
  for name in names:
    if name not in available:
      raise JaxrecError(
          f"prompt template names field {name!r}, which this dataset lacks; "
          f"available fields: {', '.join(available)}")


def fill_template(fields: dict[str, str], template: str) -> str:
  """The template filled per the segment rule; "" when all fields are empty."""
  check_template(template, fields)
  cleaned = {n: clean_field(fields[n]) for n in template_fields(template)}
  kept = []
  any_filled = False
  for segment in template.split(_SEPARATOR):
    names = _segment_fields(template, segment)
    if names and not any(cleaned[n] for n in names):
      continue
    any_filled = any_filled or bool(names)
    text = " ".join(segment.format_map(cleaned).split())
    if text:
      kept.append(text)
  return _join(kept) if any_filled else ""


def cap_text(text: str, max_chars: int) -> str:
  """At most max_chars, cut at a word boundary when there is one."""
  if max_chars < 1:
    raise JaxrecError(f"prompt max_chars must be >= 1, got {max_chars}")
  if len(text) <= max_chars:
    return text
  cut = text[:max_chars + 1].rfind(" ")
  capped = text[:cut].rstrip(" ,;:-") if cut > 0 else ""
  return capped or text[:max_chars]


def fallback_text(item_id: str) -> str:
  return f"Item {item_id}"


def render_item_text(fields: dict[str, str], template: str, max_chars: int,
                     item_id: str = "") -> str:
  """The item's text: filled template, or the fallback, capped at max_chars."""
  text = fill_template(fields, template) or fallback_text(item_id)
  return cap_text(text, max_chars)


def render_all(dataset: RecDataset, template: str,
               max_chars: int) -> tuple[list[str], int]:
  """Texts for every item in index order, and how many fell back."""
  check_template(template, dataset.field_names)
  texts, num_fallback = [], 0
  for item_id, fields in zip(dataset.item_ids, dataset.item_fields):
    text = fill_template(fields, template)
    if not text:
      text = fallback_text(item_id)
      num_fallback += 1
    texts.append(cap_text(text, max_chars))
  return texts, num_fallback


def _segment_fields(template: str, segment: str) -> list[str]:
  """Placeholder names in one segment; plain identifiers only."""
  try:
    parsed = list(string.Formatter().parse(segment))
  except ValueError as e:
    raise JaxrecError(
        f"prompt template {template!r} is malformed: {e}") from None
  names = []
  for _, name, _, _ in parsed:
    if name is None:
      continue
    if not name.isidentifier():
      raise JaxrecError(
          f"prompt template {template!r}: placeholder {{{name}}} must be a "
          f"plain field name")
    names.append(name)
  return names


def _join(segments: list[str]) -> str:
  out = segments[0]
  for segment in segments[1:]:
    out += (" " if out.endswith((".", "!", "?")) else _SEPARATOR) + segment
  return out
