"""Amazon Books under HSTU's preprocessing on Apache Beam: the same TFDS dataset, built by many workers.

`amazon_books.preprocess_files` is the reference: one host, streamed, bounded
memory. Where one host is too slow, `prepare` builds the same `amazon_books`
TFDS dataset (same users, sequences, catalogue order, item text, array_record
files, cache folder) with a Beam pipeline, on the DirectRunner here or on
Dataflow. The steps, each exactly the reference's:
  1. the ratings file is read in byte ranges (one worker each); every line
     carries its byte offset (file order) and is parsed as pyarrow's CSV reader
     would (blank lines ignored; a wrong field count, a non-numeric rating or
     timestamp, an empty, padded or non-UTF-8 id: malformed, counted);
  2. raw counts per item and per user (combiners); a rating is kept when its
     item AND its user have >= 5 (one pass, joined by key, no iteration);
  3. the catalogue is every item left after step 2; dense codes are its
     sorted order (the ~700k sorted ids are collected once, a side input);
  4. each user's kept ratings sorted by (timestamp, file offset), so ties keep
     file order; users left with < 5 dropped; user index = sorted-id rank;
  5. the metadata is read line by line through gzip (not splittable; one
     worker), only catalogue lines are kept, grouped per item and parsed in
     file order (`ast.literal_eval`, never eval; the first good line wins).
Malformed rows and the other counts of `amazon_books.BooksReport` are Beam
metrics counters (namespace `amazon_books`), read back into a BooksReport and
logged after the pipeline.

apache-beam is optional: it is imported only when this module is used, with
one message saying how to install it.
"""

import csv
import gzip
import logging
import os
import re
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from jaxrec.data import amazon_books, tfds_books, tfds_builder
from jaxrec.errors import JaxrecError

try:
  import apache_beam as beam
  from apache_beam.io.filesystems import FileSystems
except ImportError:           # optional dependency: `_require_beam` says how to install it
  beam = FileSystems = None

log = logging.getLogger(__name__)

NAMESPACE = "amazon_books"   # of the metrics counters (BooksReport's field names)
CHUNK_BYTES = 64 << 20       # ratings bytes one worker reads
_TIMESTAMP = re.compile(amazon_books._TIMESTAMP.pattern.encode())
_RATING = re.compile(amazon_books._RATING.pattern.encode())


def _require_beam() -> None:
  if beam is None:
    raise JaxrecError("Preprocessing Books on Apache Beam needs apache-beam: pip install apache-beam")


def _count(name: str, n: int = 1) -> None:
  beam.metrics.Metrics.counter(NAMESPACE, name).inc(n)


# ---------------------------------------------------------------- reading lines

def byte_ranges(path: str, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[str, int, int]]:
  """(path, start, end) ranges covering the file; each line belongs to the range it starts in."""
  size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
  return [(path, start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)]


def read_range(task: tuple[str, int, int]) -> Iterator[tuple[int, bytes]]:
  """(offset, line) of every line starting in [start, end): the reading of one worker."""
  path, start, end = task
  with FileSystems.open(path, compression_type="uncompressed") as f:
    pos = 0
    if start > 0:
      f.seek(start - 1)
      pos = start - 1 + len(f.readline())    # the line under way at `start` belongs to the range before
    while pos < end:
      line = f.readline()
      if not line:
        break
      yield pos, line
      pos += len(line)


def read_gzip_lines(path: str) -> Iterator[tuple[int, bytes]]:
  """(line number, line) through gzip, as the reference reads the metadata (any file name)."""
  with FileSystems.open(path, compression_type="uncompressed") as raw, gzip.GzipFile(fileobj=raw) as f:
    yield from enumerate(f, start=1)


# ---------------------------------------------------------------- ratings

def parse_rating(pos_line: tuple[int, bytes]) -> Iterator[tuple[bytes, bytes, int, tuple[int, int]]]:
  """(user, item, timestamp, order) of each well-formed row of one line, as pyarrow's CSV reader reads it.

  pyarrow ends rows at \\n, \\r and \\r\\n and skips blank rows; `order`
  (offset, row in line) is the file order.
  """
  pos, line = pos_line
  for k, row in enumerate(line.rstrip(b"\n").split(b"\r")):
    if not row:
      continue
    # latin-1 maps bytes to code points one to one, so ids that are not UTF-8 survive the csv module.
    fields = [f.encode("latin-1") for f in next(csv.reader([row.decode("latin-1")]))]
    if (len(fields) != 4 or not _RATING.fullmatch(fields[2]) or not _TIMESTAMP.fullmatch(fields[3])
        or not amazon_books._valid_id(fields[0]) or not amazon_books._valid_id(fields[1])):
      _count("malformed_ratings")
      continue
    _count("raw_ratings")
    yield fields[0], fields[1], int(fields[3]), (pos, k)


def _count_keys(name: str):
  def counted(kv):
    _count(name)
    return kv
  return counted


def _keep_item(kv):
  """HSTU's item half of step 2: every rating of an item with >= 5 raw ratings, keyed by user."""
  item, grouped = kv
  if sum(grouped["count"]) >= amazon_books.MIN_COUNT:
    for user, t, order in grouped["rows"]:
      yield user, (item, t, order)


def _keep_user(kv):
  """The user half of step 2, then step 4: main output (user, items, times); catalogue items tagged."""
  user, grouped = kv
  if sum(grouped["count"]) < amazon_books.MIN_COUNT:
    return
  rows = sorted(grouped["rows"], key=lambda r: (r[1], r[2]))     # time, then file order
  _count("kept_ratings", len(rows))
  for item in {r[0] for r in rows}:
    yield beam.pvalue.TaggedOutput("catalogue", item)
  if len(rows) >= amazon_books.MIN_COUNT:
    yield user, [r[0] for r in rows], [r[1] for r in rows]


def _ranks(ids: list[bytes]):
  """(id, rank in sorted order): the reference's dense codes (bytes order == code-point order)."""
  return ((key, n) for n, key in enumerate(sorted(ids)))


def _user_record(row, codes: dict, ranks: dict):
  user, items, times = row
  _count("users")
  _count("interactions", len(items))
  return ranks[user], {"user_id": user.decode("utf-8"), "items": np.array([codes[i] for i in items], np.int32),
                       "timestamps": np.array(times, np.int64)}


# ---------------------------------------------------------------- metadata

def _meta_hit(lineno_raw, codes: dict):
  """(item, (line number, line)) for the lines of catalogue items; the others are never parsed."""
  lineno, raw = lineno_raw
  if not raw.strip():
    return
  _count("meta_lines")
  m = amazon_books._ASIN.search(raw)
  if m is None:
    _count("meta_no_asin")
    return
  if m.group(1) in codes:
    yield m.group(1), (lineno, raw)


def _item_record(kv):
  """(code, item id and text fields): the first line of the item, in file order, that parses."""
  item, grouped = kv
  item_id = item.decode("utf-8")
  fields = None
  for _, raw in sorted(grouped["lines"]):
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError:
      _count("meta_non_utf8")
      line = raw.decode("utf-8", errors="replace")
    entry = amazon_books._parse_literal(line)
    if not isinstance(entry, dict) or entry.get("asin") != item_id:
      _count("meta_malformed")
    elif fields is not None:
      _count("meta_duplicates")
    else:
      fields = amazon_books.item_text_fields(entry)
  _count("items")
  if fields is None:
    _count("items_without_meta")
    fields = dict.fromkeys(amazon_books.ITEM_FIELDS, "")
  return grouped["code"][0], {"item_id": item_id, **fields}


# ---------------------------------------------------------------- the pipeline

def hstu_books(ratings_file: str, meta_file: str, chunk_bytes: int = CHUNK_BYTES) -> "beam.PTransform":
  """A PTransform (pipeline -> {"users": (index, row), "items": (index, row)}) of HSTU's preprocessing.

  Rows hold the features of their split (user_id, items, timestamps / item_id
  and the text fields); the builder fills in the rest.
  """
  _require_beam()
  ranges = byte_ranges(str(ratings_file), chunk_bytes)

  @beam.ptransform_fn
  def expand(pipeline):
    rows = (pipeline | "RatingRanges" >> beam.Create(ranges) | "SpreadRanges" >> beam.Reshuffle()
            | "ReadRatings" >> beam.FlatMap(read_range) | "ParseRatings" >> beam.FlatMap(parse_rating))
    item_counts = (rows | "ItemOnes" >> beam.Map(lambda r: (r[1], 1)) | "CountItems" >> beam.CombinePerKey(sum)
                   | "RawItems" >> beam.Map(_count_keys("raw_items")))
    user_counts = (rows | "UserOnes" >> beam.Map(lambda r: (r[0], 1)) | "CountUsers" >> beam.CombinePerKey(sum)
                   | "RawUsers" >> beam.Map(_count_keys("raw_users")))
    by_item = ({"rows": rows | "ByItem" >> beam.Map(lambda r: (r[1], (r[0], r[2], r[3]))), "count": item_counts}
               | "JoinItemCounts" >> beam.CoGroupByKey())
    by_user = ({"rows": by_item | "KeepItems" >> beam.FlatMap(_keep_item), "count": user_counts}
               | "JoinUserCounts" >> beam.CoGroupByKey())
    kept = by_user | "KeepUsers" >> beam.FlatMap(_keep_user).with_outputs("catalogue", main="users")
    codes = (kept.catalogue | "Catalogue" >> beam.Distinct() | "CatalogueList" >> beam.combiners.ToList()
             | "ItemCodes" >> beam.FlatMap(_ranks))
    ranks = (kept.users | "UserIds" >> beam.Map(lambda r: r[0]) | "UserList" >> beam.combiners.ToList()
             | "UserRanks" >> beam.FlatMap(_ranks))
    users = kept.users | "UserRecords" >> beam.Map(
        _user_record, codes=beam.pvalue.AsDict(codes), ranks=beam.pvalue.AsDict(ranks))
    hits = (pipeline | "MetaFile" >> beam.Create([str(meta_file)]) | "ReadMeta" >> beam.FlatMap(read_gzip_lines)
            | "CatalogueLines" >> beam.FlatMap(_meta_hit, codes=beam.pvalue.AsDict(codes)))
    items = ({"code": codes, "lines": hits} | "JoinMeta" >> beam.CoGroupByKey()
             | "ItemRecords" >> beam.Map(_item_record))
    return {"users": users, "items": items}

  return expand()  # pylint: disable=no-value-for-parameter


def report(result) -> amazon_books.BooksReport:
  """The BooksReport of a finished pipeline, from its metrics counters (committed where the runner has them)."""
  out = amazon_books.BooksReport()
  query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
  for counter in query["counters"]:
    value = counter.committed if counter.committed is not None else counter.attempted
    name = counter.key.metric.name
    setattr(out, name, getattr(out, name) + value)
  out.raw_ratings += out.malformed_ratings
  return out


# ---------------------------------------------------------------- the TFDS builder

class AmazonBooksBeam(tfds_books.AmazonBooks, skip_registration=True):
  """The `amazon_books` TFDS dataset with its splits generated by the Beam pipeline `hstu_books`."""

  name = tfds_books.SOURCE.name     # the same dataset (and cache folder) as the single-host builder

  def __init__(self, *, chunk_bytes: int = CHUNK_BYTES, **kwargs):
    self._chunk_bytes = chunk_bytes
    self.report: amazon_books.BooksReport | None = None
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager, pipeline):  # pylint: disable=arguments-differ
    """TFDS passes the pipeline (the `pipeline` argument); both splits share one preprocessing."""
    del dl_manager
    ratings, meta = find_files(str(self._folder))
    self.info.metadata["name"] = amazon_books.NAME
    shared = pipeline | "HstuBooks" >> hstu_books(ratings, meta, self._chunk_bytes)
    return {split: shared[split] | f"{split.title()}Examples" >> self._generate_examples(split)
            for split in ("users", "items")}

  def _generate_examples(self, split: str):  # pylint: disable=arguments-renamed
    """A PTransform: (index, row) -> (index, TFDS example), every other feature empty."""
    empty = tfds_builder.empty_example(self.SOURCE.item_fields)
    return beam.Map(lambda kv: (kv[0], {**empty, **kv[1], "index": kv[0]}))

  def _process_pipeline_result(self, pipeline_result) -> None:
    self.report = report(pipeline_result)
    amazon_books.log_report(self.report)


def _join(folder: str, name: str) -> str:
  return FileSystems.join(folder, name) if "://" in folder else os.path.join(folder, name)


def find_files(folder: str) -> tuple[str, str]:
  """(ratings, meta) in `folder` (local or any Beam filesystem, e.g. gs://), or the reference's message."""
  _require_beam()
  files = [_join(folder, f) for f in (amazon_books.RATINGS_FILE, amazon_books.META_FILE)]
  missing = [name for name, f in zip((amazon_books.RATINGS_FILE, amazon_books.META_FILE), files)
             if not FileSystems.exists(f)]
  if missing:
    raise JaxrecError(amazon_books.missing_files_message(folder, missing))
  return files[0], files[1]


def config_name(folder: str) -> str:
  """The single-host builder's fingerprint name for local files (one cache for both); remote: size and time."""
  if "://" not in folder:
    files = amazon_books.find_files(folder)
    return f"src-{tfds_builder.fingerprint(files, {}, tfds_books.SOURCE.version)}"
  metas = [(f, FileSystems.match([f])[0].metadata_list[0]) for f in find_files(folder)]
  entries = [(os.path.basename(f), m.size_in_bytes, m.last_updated_in_seconds) for f, m in metas]
  return f"src-{tfds_builder.fingerprint_of(entries, {}, tfds_books.SOURCE.version)}"


def prepare(path: str | os.PathLike, data_dir: str | os.PathLike, beam_runner=None, beam_options=None,
            chunk_bytes: int = CHUNK_BYTES) -> AmazonBooksBeam:
  """The `amazon_books` TFDS dataset of the files in folder `path`, prepared on Beam under `data_dir` once.

  `path` and `data_dir` may be local or gs:// (Dataflow); `beam_runner` is a
  runner or its name, `beam_options` a PipelineOptions (or argv list).
  Prepared already (by Beam or on one host): nothing runs.
  """
  _require_beam()
  folder = str(path) if "://" in str(path) else os.path.abspath(path)
  find_files(folder)                          # the one message, before TFDS's
  if isinstance(beam_options, (list, tuple)):
    beam_options = beam.options.pipeline_options.PipelineOptions(list(beam_options))
  if beam_runner is None and beam_options is None:
    beam_runner = "DirectRunner"
  if isinstance(beam_runner, str):
    beam_runner = beam.runners.create_runner(beam_runner)
  name = config_name(folder)
  # The single-host builder's lock too: either path waits for the other, then reads its dataset.
  with tfds_builder.prepare_lock(data_dir, AmazonBooksBeam.name, name):
    builder = AmazonBooksBeam(folder=folder, data_dir=str(data_dir), file_format="array_record",
                              config=tfds.core.BuilderConfig(name=name), chunk_bytes=chunk_bytes)
    try:
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          beam_runner=beam_runner, beam_options=beam_options))
    except Exception as e:        # TFDS's writer refuses an empty split inside the pipeline
      if "generated examples is 0 for split users" in str(e):
        raise JaxrecError(f"{folder}: no user keeps {amazon_books.MIN_COUNT} well-formed ratings after "
                          "HSTU's filter; check the ratings file") from None
      raise
  return builder


def main(argv: list[str] | None = None) -> None:
  """`python -m jaxrec.data.books_beam --path=DIR --data_dir=DIR [Beam pipeline options]`."""
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--path", required=True, help="folder of ratings_Books.csv and meta_Books.json.gz")
  parser.add_argument("--data_dir", default=str(tfds_books.default_data_dir()), help="TFDS data dir")
  parser.add_argument("--chunk_mb", type=int, default=CHUNK_BYTES >> 20, help="ratings MB one worker reads")
  args, pipeline_args = parser.parse_known_args(argv)
  logging.basicConfig()
  logging.getLogger("jaxrec").setLevel(logging.INFO)     # the BooksReport, not Beam's own INFO lines
  _require_beam()
  options = beam.options.pipeline_options.PipelineOptions(pipeline_args)   # --runner=...; DirectRunner if none
  builder = prepare(args.path, args.data_dir, beam_options=options, chunk_bytes=args.chunk_mb << 20)
  print(f"{builder.data_dir}: {builder.info.splits['users'].num_examples} users, "
        f"{builder.info.splits['items'].num_examples} items")


if __name__ == "__main__":
  try:
    main()
  except JaxrecError as e:
    raise SystemExit(f"error: {e}") from None
