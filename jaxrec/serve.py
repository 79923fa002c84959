"""Serving a trained run: build the index, serve HTTP, add/remove items by text, export.

  python -m jaxrec.serve --workdir=DIR [--host=127.0.0.1 --port=8000]
      serves DIR (builds DIR/serving first if it is missing)
  python -m jaxrec.serve build --workdir=DIR [--target_recall=0.95 --recall_k=100 ...]
      (re)builds the serving folder: model, catalogue, ScaNN index tuned on held-out users
  python -m jaxrec.serve add --workdir=DIR --items=new.jsonl    (one {"id", "text"|"title", ...} per line)
  python -m jaxrec.serve add --workdir=DIR --id=X --text="..."
  python -m jaxrec.serve remove --workdir=DIR --id=X [--id=Y]
  python -m jaxrec.serve export --workdir=DIR --out=FOLDER      (items.parquet, embeddings.npy, items.json)

`--serving_dir` puts the serving folder elsewhere (default DIR/serving), e.g.
when the training workdir is read-only. `add`/`remove` change the folder
offline; while a server runs on it, use its HTTP API instead (one writer).
Bad input ends with one line on stderr and exit status 2.
"""

import argparse
import json
import logging
import pathlib
import sys

from jaxrec.errors import JaxrecError

COMMANDS = ("serve", "build", "add", "remove", "export")


def parse_args(argv: list[str]) -> argparse.Namespace:
  command = argv[0] if argv and argv[0] in COMMANDS else "serve"
  rest = argv[1:] if argv and argv[0] in COMMANDS else argv
  p = argparse.ArgumentParser(prog=f"python -m jaxrec.serve {command}", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="training workdir (config.json, checkpoints/)")
  p.add_argument("--serving_dir", default="", help="serving folder (default WORKDIR/serving)")
  p.add_argument("--host", default="127.0.0.1")
  p.add_argument("--port", type=int, default=8000)
  p.add_argument("--max_k", type=int, default=1000, help="largest k a request may ask for")
  p.add_argument("--target_recall", type=float, default=0.95)
  p.add_argument("--recall_k", type=int, default=100)
  p.add_argument("--brute_force_below", type=int, default=20_000)
  p.add_argument("--num_leaves", type=int, default=0, help="0 = about sqrt(items)")
  p.add_argument("--include_cold_items", action="store_true",
                 help="build: keep the cold-item protocol's held-out items in the catalogue")
  p.add_argument("--items", default="", help="add: JSON-lines file of items")
  p.add_argument("--id", action="append", default=[], help="add/remove: item id")
  p.add_argument("--text", default="", help="add: the item's text")
  p.add_argument("--title", default="", help="add: the item's title")
  p.add_argument("--out", default="", help="export: output folder")
  args = p.parse_args(rest)
  args.command = command
  return args


def _settings(args):
  from jaxrec.serving.index import IndexSettings  # noqa: PLC0415
  s = IndexSettings(target_recall=args.target_recall, recall_k=args.recall_k,
                    brute_force_below=args.brute_force_below, num_leaves=args.num_leaves)
  s.check()
  return s


def _folder(args) -> pathlib.Path:
  return pathlib.Path(args.serving_dir or pathlib.Path(args.workdir) / "serving")


def build(args):
  from jaxrec.serving import catalog, service  # noqa: PLC0415
  settings = _settings(args)   # bad values fail before the slow part
  info = catalog.build_artifact(args.workdir, _folder(args), include_cold=args.include_cold_items)
  svc = service.Service(_folder(args), settings=settings, max_k=args.max_k, warm_up=False)
  report = {k: v for k, v in svc.index.report.items() if k != "grid"}
  print(json.dumps({"serving_dir": str(_folder(args)), **info, "index": svc.index.params,
                    "index_report": report}, indent=1))
  return svc


def _items_of(args) -> list[dict]:
  if args.items:
    items = []
    for n, line in enumerate(pathlib.Path(args.items).read_text().splitlines(), 1):
      if line.strip():
        try:
          items.append(json.loads(line))
        except ValueError as e:
          raise JaxrecError(f"{args.items} line {n} is not JSON ({e})") from e
    return items
  if len(args.id) != 1 or not (args.text or args.title):
    raise JaxrecError("add needs --items=FILE.jsonl, or one --id with --text or --title")
  return [{"id": args.id[0], **({"text": args.text} if args.text else {}),
           **({"title": args.title} if args.title else {})}]


def run(argv: list[str]) -> None:
  args = parse_args(argv)
  from jaxrec.serving import service  # noqa: PLC0415
  if args.command == "build":
    build(args)
    return
  if not (_folder(args) / "state.json").is_file():
    if args.command != "serve":
      raise JaxrecError(f"{_folder(args)} holds no serving folder; run `python -m jaxrec.serve build "
                        f"--workdir={args.workdir}` first")
    build(args)
  svc = service.Service(_folder(args), max_k=args.max_k, warm_up=args.command == "serve")
  if args.command == "add":
    print(json.dumps(svc.add_items(_items_of(args))))
  elif args.command == "remove":
    if not args.id:
      raise JaxrecError("remove needs at least one --id")
    svc.remove_items(args.id)
    print(json.dumps({"removed": args.id}))
  elif args.command == "export":
    if not args.out:
      raise JaxrecError("export needs --out=FOLDER")
    print(json.dumps(svc.export(args.out)))
  else:
    import uvicorn  # noqa: PLC0415
    from jaxrec.serving.app import create_app  # noqa: PLC0415
    # Keep-alive beyond the longest queueing a loaded host sees, so a client reusing a
    # connection does not race the server closing it.
    uvicorn.run(create_app(svc), host=args.host, port=args.port, log_level="warning",
                timeout_keep_alive=60)


def main() -> None:
  logging.basicConfig(level=logging.WARNING)
  try:
    run(sys.argv[1:])
  except JaxrecError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
