"""Amazon Books 2014 as a TFDS dataset (the generic `tfds_builder`), plus what only Books needs.

Files: in `manual_dir` (TFDS's manual download folder) when present;
otherwise, with `download=True`, fetched from their public URLs; otherwise one
JaxrecError naming the exact paths (`MANUAL_DOWNLOAD_INSTRUCTIONS` says the
same). The generator is `amazon_books.preprocess_files` (HSTU's filter,
streamed, bounded memory), run once; later runs read the array_record files
through grain in seconds. Everything else (features, splits, fingerprint,
reading back) is `tfds_builder`'s.
"""

import os
import pathlib

import tensorflow_datasets as tfds

from jaxrec.data import amazon_books
from jaxrec.data import dataset as ds
from jaxrec.data import tfds_builder
from jaxrec.errors import JaxrecError


def _preprocess(ratings_file: pathlib.Path, meta_file: pathlib.Path) -> ds.RecDataset:
  dataset, report = amazon_books.preprocess_files(ratings_file, meta_file)
  amazon_books.log_report(report)
  return dataset


SOURCE = tfds_builder.Source(
    name="amazon_books", reader=lambda folder: _preprocess(*amazon_books.find_files(folder)),
    files=amazon_books.find_files,
    item_fields=amazon_books.ITEM_FIELDS, version="1.1.0",
    description="Amazon Books 2014 under HSTU's preprocessing (DESIGN.md section 2)")


class AmazonBooks(tfds_builder.RecBuilder, skip_registration=True):
  """Amazon Books 2014 under HSTU's preprocessing, found in manual_dir or downloaded."""

  name = SOURCE.name
  SOURCE = SOURCE
  VERSION = tfds.core.Version(SOURCE.version)
  MANUAL_DOWNLOAD_INSTRUCTIONS = amazon_books.missing_files_message(
      "<manual_dir>", [amazon_books.RATINGS_FILE, amazon_books.META_FILE])

  def __init__(self, *, download: bool = False, **kwargs):
    self._download = download
    super().__init__(**kwargs)

  def _source_dataset(self, dl_manager) -> ds.RecDataset:
    files = _manual_files(dl_manager)
    if files is None:
      if not self._download:
        raise JaxrecError(amazon_books.missing_files_message(
            dl_manager._manual_dir or ".", [amazon_books.RATINGS_FILE, amazon_books.META_FILE]))
      paths = dl_manager.download(amazon_books.URLS)
      files = (paths[amazon_books.RATINGS_FILE], paths[amazon_books.META_FILE])
    return _preprocess(*files)


def _manual_files(dl_manager) -> tuple[pathlib.Path, pathlib.Path] | None:
  folder = dl_manager._manual_dir     # the attribute, not the property: that one asserts
  if folder is None:
    return None
  folder = pathlib.Path(folder)
  files = folder / amazon_books.RATINGS_FILE, folder / amazon_books.META_FILE
  return files if all(f.is_file() for f in files) else None


def prepare(path: str | os.PathLike, data_dir: str | os.PathLike, download: bool = False,
            beam_runner=None, beam_options=None) -> AmazonBooks:
  """The builder of the files in folder `path`, prepared (array_record) under `data_dir` once.

  With `beam_runner` (e.g. "DirectRunner") or `beam_options` (Beam
  PipelineOptions, e.g. a Dataflow run) the same dataset is built by the Beam
  pipeline of `books_beam` (needs apache-beam; the files are never downloaded).
  """
  if beam_runner is not None or beam_options is not None:
    from jaxrec.data import books_beam     # imports apache_beam: only when asked for
    return books_beam.prepare(path, data_dir, beam_runner=beam_runner, beam_options=beam_options)
  folder = pathlib.Path(path).resolve()
  if not download:
    amazon_books.find_files(folder)             # the one message, before TFDS's own assertion
  local = (folder / amazon_books.RATINGS_FILE).is_file()
  return tfds_builder.prepare(AmazonBooks, folder, data_dir, config_name=None if local else "download",
                              download=download)


read = tfds_builder.read
default_data_dir = tfds_builder.default_data_dir
