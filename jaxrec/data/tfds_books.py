"""Amazon Books 2014 as a TFDS dataset: written once as `array_record`, read with grain.

`AmazonBooks` is a `tfds.core.GeneratorBasedBuilder` with two splits:
`users` (user id, HSTU-filtered item indices, timestamps; in user order) and
`items` (item id and the metadata's text fields; in catalogue order). It runs
`amazon_books.preprocess_files` (streamed, bounded memory) once; later runs
read the array_record files through `tfds.data_source` / grain in seconds.

No TensorFlow anywhere (checked: `tensorflow` is never imported). What the
installed TFDS (4.9.10) needs for that: `file_format="array_record"`, a
`DatasetInfo` built directly (`dataset_info_from_configs` looks for a package
folder of metadata), an explicit `index` feature (examples are not
stored in generation order, even with `disable_shuffling`), and reading with
`as_data_source()` / `tfds.data_source` (only `as_dataset()` uses tf.data).

Files: in `manual_dir` (TFDS's manual download folder) when present;
otherwise, with `download=True`, fetched from their public URLs; otherwise one
JaxrecError naming the exact paths (`MANUAL_DOWNLOAD_INSTRUCTIONS` says the
same). The builder config name fingerprints the raw files (size, mtime), so
replacing them prepares the dataset again instead of reading a stale one.
"""

import hashlib
import logging
import os
import pathlib

import grain
import numpy as np
import tensorflow_datasets as tfds

from jaxrec.data import amazon_books
from jaxrec.data import dataset as ds
from jaxrec.errors import JaxrecError

log = logging.getLogger(__name__)

VERSION = "1.0.0"


def _features(feature_names: tuple[str, ...]) -> dict:
  return {name: tfds.features.Text() for name in feature_names}


class AmazonBooks(tfds.core.GeneratorBasedBuilder):
  """Amazon Books 2014 under HSTU's preprocessing (DESIGN.md section 2)."""

  VERSION = tfds.core.Version(VERSION)
  MANUAL_DOWNLOAD_INSTRUCTIONS = amazon_books.missing_files_message(
      "<manual_dir>", [amazon_books.RATINGS_FILE, amazon_books.META_FILE])

  def __init__(self, *, download: bool = False, **kwargs):
    self._download = download
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__.split("\n\n")[0],
        features=tfds.features.FeaturesDict({
            "index": tfds.features.Scalar(dtype=np.int64),   # row in its split (user / item index)
            "user_id": tfds.features.Text(),
            "items": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            "timestamps": tfds.features.Tensor(shape=(None,), dtype=np.int64),
            "item_id": tfds.features.Text(),
            **_features(amazon_books.ITEM_FIELDS)}),
        homepage="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html")

  def _split_generators(self, dl_manager):
    files = _manual_files(dl_manager)
    if files is None:
      if not self._download:
        raise JaxrecError(amazon_books.missing_files_message(
            dl_manager._manual_dir or ".", [amazon_books.RATINGS_FILE, amazon_books.META_FILE]))
      paths = dl_manager.download(amazon_books.URLS)
      files = (paths[amazon_books.RATINGS_FILE], paths[amazon_books.META_FILE])
    dataset, report = amazon_books.preprocess_files(*files)
    amazon_books.log_report(report)
    return {"users": self._generate_examples(dataset, "users"),
            "items": self._generate_examples(dataset, "items")}

  def _generate_examples(self, dataset: ds.RecDataset, split: str):
    """(key, example) in order: users (sequences) or items (text); unused features left empty."""
    empty = {"user_id": "", "items": np.zeros(0, np.int32), "timestamps": np.zeros(0, np.int64),
             "item_id": "", **dict.fromkeys(amazon_books.ITEM_FIELDS, "")}
    if split == "users":
      for u, (uid, seq, times) in enumerate(zip(dataset.user_ids, dataset.sequences, dataset.timestamps)):
        yield u, {**empty, "index": u, "user_id": uid, "items": seq, "timestamps": times}
    else:
      for i, (iid, fields) in enumerate(zip(dataset.item_ids, dataset.item_fields)):
        yield i, {**empty, "index": i, "item_id": iid, **fields}


def _manual_files(dl_manager) -> tuple[pathlib.Path, pathlib.Path] | None:
  folder = dl_manager._manual_dir     # the attribute, not the property: that one asserts
  if folder is None:
    return None
  folder = pathlib.Path(folder)
  files = folder / amazon_books.RATINGS_FILE, folder / amazon_books.META_FILE
  return files if all(f.is_file() for f in files) else None


def _fingerprint(folder: pathlib.Path) -> str:
  h = hashlib.sha256()
  for name in (amazon_books.RATINGS_FILE, amazon_books.META_FILE):
    st = (folder / name).stat()
    h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
  return h.hexdigest()[:12]


def prepare(path: str | os.PathLike, data_dir: str | os.PathLike, download: bool = False) -> AmazonBooks:
  """The builder of the files in folder `path`, prepared (array_record) under `data_dir` once."""
  folder = pathlib.Path(path).resolve()
  if not download:
    amazon_books.find_files(folder)             # the one message, before TFDS's own assertion
  name = f"src-{_fingerprint(folder)}" if (folder / amazon_books.RATINGS_FILE).is_file() else "download"
  builder = AmazonBooks(data_dir=str(data_dir), download=download, file_format="array_record",
                        config=tfds.core.BuilderConfig(name=name))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(folder)))
  return builder


def read(builder: AmazonBooks) -> ds.RecDataset:
  """The RecDataset from the prepared array_record files, read with grain."""
  source = builder.as_data_source()
  text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)
  n_users, n_items = len(source["users"]), len(source["items"])
  users, seqs, times = [None] * n_users, [None] * n_users, [None] * n_users
  for rec in grain.MapDataset.source(source["users"]):
    u = int(rec["index"])
    users[u] = text(rec["user_id"])
    seqs[u] = np.asarray(rec["items"], np.int32)
    times[u] = np.asarray(rec["timestamps"], np.int64)
  item_ids, fields = [None] * n_items, [None] * n_items
  for rec in grain.MapDataset.source(source["items"]):
    i = int(rec["index"])
    item_ids[i] = text(rec["item_id"])
    fields[i] = {k: text(rec[k]) for k in amazon_books.ITEM_FIELDS}
  return ds.RecDataset(name="amazon-books", item_ids=tuple(item_ids), item_fields=tuple(fields),
                       user_ids=tuple(users), sequences=tuple(seqs), timestamps=tuple(times)).validate()


def default_data_dir() -> pathlib.Path:
  """$JAXREC_CACHE/tfds, else ~/.cache/jaxrec/tfds (the data folder may be read-only)."""
  root = os.environ.get("JAXREC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxrec")
  return pathlib.Path(root) / "tfds"


def load(path: str | os.PathLike) -> ds.RecDataset:
  """The registry's loader for kind amazon_books: prepare once (cached), then read."""
  return read(prepare(path, default_data_dir()))
