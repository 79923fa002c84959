"""One entry point from a config's dataset kind to a loaded RecDataset."""

import inspect
from collections.abc import Callable

from jaxrec.data import lcrec_json
from jaxrec.data import movielens
from jaxrec.data import synthetic
from jaxrec.data import tfds_books
from jaxrec.data.dataset import RecDataset
from jaxrec.errors import JaxrecError

# kind -> (loader, whether it reads a folder).
_LOADERS: dict[str, tuple[Callable[..., RecDataset], bool]] = {
    "amazon_books": (tfds_books.load, True),     # HSTU-preprocessed once into TFDS array_record
    "lcrec_json": (lcrec_json.load, True),
    "movielens_100k": (movielens.load_100k, True),
    "movielens_latest_small": (movielens.load_latest_small, True),
    "synthetic_demo": (synthetic.make_demo, False),
}
KINDS: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(kind: str, path: str | None = None, **kwargs) -> RecDataset:
  """Loads dataset `kind` from folder `path`; kwargs go to its loader."""
  if kind not in _LOADERS:
    raise JaxrecError(
        f"unknown dataset kind {kind!r}; valid kinds: {', '.join(KINDS)}")
  loader, reads_folder = _LOADERS[kind]
  if reads_folder and path is None:
    raise JaxrecError(f"dataset kind {kind!r} needs a path to its folder")
  if not reads_folder and path is not None:
    raise JaxrecError(
        f"dataset kind {kind!r} is generated, not read; got path {path!r}")
  args = (path,) if reads_folder else ()
  try:
    inspect.signature(loader).bind(*args, **kwargs)
  except TypeError:
    params = list(inspect.signature(loader).parameters)[len(args):]
    raise JaxrecError(
        f"dataset kind {kind!r} got options {sorted(kwargs)}; valid options: "
        f"{', '.join(params) or 'none'}") from None
  return loader(*args, **kwargs)
