"""One entry point from a config's dataset kind to a loaded RecDataset.

Every kind read from files is, by default, a TFDS dataset: prepared once from
its direct reader (`tfds_builder`, cached under $JAXREC_CACHE/tfds keyed by
the files' fingerprint) and read back with grain. `via_tfds=False` calls the
direct reader instead (the reference; faster for tiny test folders).
"""

import inspect
import os
from collections.abc import Callable

from jaxrec.data import amazon_books
from jaxrec.data import lcrec_json
from jaxrec.data import movielens
from jaxrec.data import stream_split
from jaxrec.data import synthetic
from jaxrec.data import tfds_books
from jaxrec.data import tfds_builder
from jaxrec.data.dataset import ItemCatalogue, RecDataset
from jaxrec.errors import JaxrecError

# kind -> (direct loader, whether it reads a folder).
_LOADERS: dict[str, tuple[Callable[..., RecDataset], bool]] = {
    "amazon_books": (amazon_books.load, True),
    "lcrec_json": (lcrec_json.load, True),
    "movielens_100k": (movielens.load_100k, True),
    "movielens_latest_small": (movielens.load_latest_small, True),
    "synthetic_demo": (synthetic.make_demo, False),
}
KINDS: tuple[str, ...] = tuple(_LOADERS)

# kind -> its TFDS source (the direct reader is its generator).
SOURCES: dict[str, tfds_builder.Source] = {
    "amazon_books": tfds_books.SOURCE,
    "lcrec_json": tfds_builder.Source(
        name="lcrec_json", reader=lcrec_json.load, files=lcrec_json.files, item_fields=None,
        description="An LC-Rec json dataset (e.g. Amazon Office, Beauty)"),
    "movielens_100k": tfds_builder.Source(
        name="movielens_100k", reader=movielens.load_100k, files=movielens.files_100k,
        item_fields=("title", "release_date", "year", "genres"), description="MovieLens 100K"),
    "movielens_latest_small": tfds_builder.Source(
        name="movielens_latest_small", reader=movielens.load_latest_small,
        files=movielens.files_latest_small, item_fields=("title", "genres", "tags"),
        description="MovieLens latest-small"),
}


def _prepared(kind: str, path: str, **options) -> tfds_builder.RecBuilder:
  """kind's TFDS builder of the files in `path`, prepared (array_record) under the default data dir
  once; Books prepares through its own builder (manual_dir / download), the others through the
  generic one."""
  options = {k: v for k, v in options.items() if v is not None}
  if kind == "amazon_books":
    return tfds_books.prepare(path, tfds_books.default_data_dir(), **options)
  return tfds_builder.prepare(SOURCES[kind], path, tfds_builder.default_data_dir(), options)


def load_dataset(kind: str, path: str | None = None, via_tfds: bool = True, **kwargs) -> RecDataset:
  """Loads dataset `kind` from folder `path` (through TFDS unless `via_tfds` is False); kwargs go to
  its reader."""
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
  if via_tfds and kind in SOURCES:
    return tfds_builder.read(_prepared(kind, *args, **kwargs))
  return loader(*args, **kwargs)


def load_streamed(kind: str, path: str, progress: Callable[[int], object] | None = None,
                  **kwargs) -> tuple[ItemCatalogue, stream_split.FlatUsers]:
  """(the items, the users' item sequences) of kind's TFDS dataset, prepared once as `load_dataset`
  does, without holding the sequences: they are copied once from the `users` split into a flat
  memory-mapped file beside the cache (`stream_split.open_flat`; `progress(n)` per chunk of n users
  copied), which `stream_split.leave_one_out` reads."""
  builder = _streamable(kind, path, **kwargs)
  items = tfds_builder.read_items(builder)
  config = builder.builder_config.name
  root = tfds_builder.default_data_dir().parent / "stream"
  with tfds_builder.prepare_lock(root, builder.name, config):   # one process writes the copy
    flat = stream_split.open_flat(builder.as_data_source()["users"],
                                  root / builder.name / config / str(builder.version),
                                  items.num_items, progress, source_id=_prepared_id(builder))
  return items, flat


def _prepared_id(builder: tfds_builder.RecBuilder) -> str:
  """Which preparation of the dataset this is: its info file's size and time change when TFDS
  prepares it again (e.g. Books downloaded anew under the same config name)."""
  info = os.stat(os.path.join(builder.data_dir, "dataset_info.json"))
  return f"{info.st_size}:{info.st_mtime_ns}"


def load_items(kind: str, path: str, **kwargs) -> ItemCatalogue:
  """The items of kind's TFDS dataset (prepared once), without reading its users."""
  return tfds_builder.read_items(_streamable(kind, path, **kwargs))


def _streamable(kind: str, path: str, **kwargs) -> tfds_builder.RecBuilder:
  if kind not in SOURCES:
    raise JaxrecError(f"dataset kind {kind!r} has no TFDS dataset to stream from; kinds that do: "
                      f"{', '.join(SOURCES)}")
  return _prepared(kind, path, **kwargs)
