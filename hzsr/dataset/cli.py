"""``hzsr dataset ...`` verbs: pack, verify, info, split, curate, ingest, export (``browse``: hzsr/browse/cli.py).

Exit codes as everywhere in hzsr (``core/errors.py:EXIT_CODES``): 0 success; 1 the input was read
and is bad (a corrupt shard, a manifest that disagrees, a bad session record); 2 it could not be
read or the options are wrong (missing folder, bad --ratios, bad --query). Errors go up to
``hzsr.cli.main``, which prints their one line and exits with their ``exit_code``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hzsr.core.cliargs import add_folder, add_json, add_quiet, add_verb
from hzsr.core.errors import EXIT_OK, EXIT_PROBLEMS
from hzsr.dataset.codecs import CODECS, DEFAULT_CODEC


def _emit(args: argparse.Namespace, data: dict[str, Any], human: list[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print("\n".join(human))


def add_dataset_parser(stages: Any) -> Any:
    """``hzsr dataset``'s verbs; returns the verbs' subparsers (``browse`` adds itself there)."""
    ds = stages.add_parser("dataset", help="HDF5 shards: pack, verify, info, split, curate, ingest, export, browse")
    verbs = ds.add_subparsers(dest="verb", required=True, metavar="VERB")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = add_verb(verbs, "pack", "session folders -> shards + manifest (resumable)", _cmd_pack, formatter_class=fmt)
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="session folders to pack")
    p.add_argument("--out", required=True, help="data set folder to create or resume")
    p.add_argument("--shard-size", default="1GiB",
                   help="captures per shard (e.g. 64) or decoded bytes per shard (e.g. 1GiB, 500MB)")
    p.add_argument("--filter", default=None,
                   help="query over manifest columns (grammar: docs/dataset.md, Queries; never run as Python), "
                   "e.g. \"verdict != 'fail' and scene_kind == 'night'\" (default: every capture)")
    p.add_argument("--compression", default=DEFAULT_CODEC, choices=CODECS,
                   help="codec of the image arrays; the default is what bench/dataset.py measured best")
    p.add_argument("--workers", type=int, default=None, help="cores to use: shards in parallel processes, "
                   "decode/hash threads within a shard (default: every usable core)")
    p.add_argument("--scheduler", default=None,
                   help="dask.distributed scheduler address (tcp://host:8786): one shard per task "
                   "(default: none, local --workers)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="if another process is writing --out, wait up to this long for it (0: refuse at once)")
    p.add_argument("--truth", action="store_true", help="also store simulated captures' ground truth from "
                   "<session>.truth/ where present (ideal_T and the true occlusion/defocus masks; docs/dataset.md)")
    add_quiet(p)
    add_json(p, "print the machine-readable summary")

    v = add_verb(verbs, "verify", "open every shard, check every sha256, compare with the manifest", _cmd_verify,
                 formatter_class=fmt)
    add_folder(v, "dir", "data set folder")
    v.add_argument("--repair", action="store_true", help="rebuild manifest.csv from the intact shards")
    add_json(v, "print the findings as JSON")
    add_quiet(v)

    i = add_verb(verbs, "info", "counts and sizes by scene kind, tag, verdict and device", _cmd_info,
                 formatter_class=fmt)
    add_folder(i, "dir", "data set (or subset) folder")
    add_json(i, "print the tables as JSON")

    s = add_verb(verbs, "split", "group-aware, stratified, stable splits -> splits.csv", _cmd_split,
                 formatter_class=fmt)
    add_folder(s, "dir", "data set folder")
    s.add_argument("--by", default="scene", help="group column: scene, session, or any manifest column")
    s.add_argument("--ratios", default="0.8,0.1,0.1", help="split fractions (train,val,test), summing to 1")
    s.add_argument("--names", default=None, help="split names, comma-separated (default train,val,test)")
    s.add_argument("--stratify", default="kind", help="balance this column across splits ('none' to turn off)")
    s.add_argument("--seed", type=int, default=0, help="seed of the group order")
    s.add_argument("--reassign", action="store_true", help="ignore the existing splits.csv and assign afresh")
    add_json(s, "print the summary as JSON")

    c = add_verb(verbs, "curate", "subset manifest by a query (no copying); flag near-duplicates", _cmd_curate,
                 formatter_class=fmt)
    add_folder(c, "dir", "data set folder")
    c.add_argument("--query", required=True,
                   help="query over manifest columns (grammar: docs/dataset.md, Queries; never run as Python), "
                   "e.g. \"scene_kind == 'portrait' and verdict == 'pass'\"")
    c.add_argument("--out", required=True, help="subset folder to create")
    c.add_argument("--dup-distance", type=int, default=6,
                   help="max Hamming distance of 64-bit pHashes of main_W to flag a near-duplicate")
    add_json(c, "print the summary as JSON")

    g = add_verb(verbs, "ingest", "import another data set's layout as a packed data set", _cmd_ingest,
                 formatter_class=fmt)
    add_folder(g, "folder", "folder in the given layout")
    g.add_argument("--layout", required=True, choices=("camerafusion",), help="source layout")
    g.add_argument("--out", required=True, help="data set folder to create")
    g.add_argument("--compression", default=DEFAULT_CODEC, choices=CODECS, help="codec of the arrays")
    g.add_argument("--shard-size", default="1GiB", help="as for pack")
    add_quiet(g)
    add_json(g, "print the summary as JSON")

    e = add_verb(verbs, "export", "write a split as paired PNG folders (BasicSR layout) or a Hugging Face "
                 "datasets folder (Arrow)", _cmd_export, formatter_class=fmt)
    add_folder(e, "dir", "data set folder")
    e.add_argument("--split", default=None, help="split from splits.csv (default: every capture)")
    e.add_argument("--format", default="folders", choices=("folders", "hf"),
                   help="folders: LR/HR/Ref PNGs + meta_info.txt; hf: datasets.load_from_disk(OUT) (needs 'hzsr[hf]')")
    e.add_argument("--out", required=True, help="folder to create")
    add_quiet(e)
    add_json(e, "print the summary as JSON")
    return verbs


def _cmd_pack(args: argparse.Namespace) -> int:
    from hzsr.dataset.pack import PackConfig, pack_dataset

    cfg = PackConfig(shard_size=args.shard_size, filter=args.filter, compression=args.compression,
                     workers=args.workers, scheduler=args.scheduler, wait_s=args.wait, progress=not args.quiet,
                     truth=args.truth)
    res = pack_dataset(args.sessions, args.out, cfg)
    for s in res.skipped:
        print(f"warning: {s}", file=sys.stderr)
    data = {"out": str(res.out), "captures": res.captures, "new_captures": res.new_captures,
            "filtered_out": res.filtered_out, "skipped": res.skipped, "shards_written": res.written,
            "shards_kept": res.kept, "manifest": str(res.manifest), "compression": args.compression,
            "refreshed": res.refreshed}
    _emit(args, data, [
        f"packed {res.new_captures} new captures into {len(res.written)} shards "
        f"({len(res.kept)} complete shards kept, {res.filtered_out} filtered out, {len(res.skipped)} skipped); "
        f"{res.captures} captures in {res.out}",
        *([f"refreshed the sync/QA results or scene fields of {len(res.refreshed)} packed captures "
           f"({', '.join(sorted({f for v in res.refreshed.values() for f in v}))}; pixels untouched)"]
          if res.refreshed else []),
        f"wrote {res.manifest}", *(f"wrote {Path(res.out) / 'shards' / n}" for n in res.written)])
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from hzsr.dataset.verify import verify_dataset

    rep = verify_dataset(args.dir, repair=args.repair, progress=not args.quiet)
    for p in rep.problems:
        print(p, file=sys.stderr)
    data = rep.to_json()
    _emit(args, data, [f"{args.dir}: {rep.verdict}: {rep.shards_ok}/{rep.shards} shards intact, "
                       f"{rep.captures_ok} captures verified, {len(rep.problems)} problems",
                       *([f"wrote {rep.repaired}"] if rep.repaired else [])])
    return EXIT_OK if not rep.problems or (args.repair and rep.repaired and not rep.unrepairable) else EXIT_PROBLEMS


def _cmd_info(args: argparse.Namespace) -> int:
    from hzsr.dataset.info import dataset_info, format_info

    info = dataset_info(args.dir)
    _emit(args, info, format_info(info))
    return EXIT_OK


def _cmd_split(args: argparse.Namespace) -> int:
    from hzsr.dataset.labels import without_rejected
    from hzsr.dataset.manifest import load_manifest
    from hzsr.dataset.reader import SPLITS, ShardReader
    from hzsr.dataset.splits import SplitConfig, assign_splits, load_splits, parse_ratios, split_table, write_splits

    names = tuple(args.names.split(",")) if args.names else None
    ratios, names = parse_ratios(args.ratios, names)
    strat = None if str(args.stratify).lower() == "none" else args.stratify
    cfg = SplitConfig(by=args.by, ratios=ratios, names=names, stratify=strat, seed=args.seed,
                      reassign=args.reassign)
    root = Path(args.dir)
    man, rejected = without_rejected(load_manifest(root), ShardReader(root).shard_root)  # labels.csv
    path = root / SPLITS
    from hzsr.core.lock import DatasetLock

    with DatasetLock(root):  # read splits.csv and write it back as the data set's one writer
        existing = load_splits(path) if path.is_file() and not args.reassign else None
        df = assign_splits(man, cfg, existing)
        write_splits(path, df)
    counts = df["split"].value_counts().reindex(list(names), fill_value=0)
    groups = df.groupby("split")["group"].nunique().reindex(list(names), fill_value=0)
    table = split_table(man, df, "scene_kind")
    data = {"splits": str(path), "captures": {k: int(v) for k, v in counts.items()},
            "groups": {k: int(v) for k, v in groups.items()},
            "target": {k: r * len(df) for k, r in zip(names, ratios, strict=True)},
            "by_kind": json.loads(table.to_json(orient="index")), "kept_existing": existing is not None,
            "rejected": rejected}
    _emit(args, data, [f"{k}: {int(counts[k])} captures in {int(groups[k])} groups "
                       f"(target {r * len(df):.1f})" for k, r in zip(names, ratios, strict=True)]
          + [table.to_string(), *([f"{rejected} captures rejected in labels.csv left out"] if rejected else []),
             f"wrote {path}"])
    return EXIT_OK


def _cmd_curate(args: argparse.Namespace) -> int:
    from hzsr.dataset.curate import curate

    res = curate(args.dir, args.query, args.out, max_distance=args.dup_distance)
    _emit(args, res, [f"selected {res['selected']} of {res['total']} captures ({res['rejected']} rejected in "
                      "labels.csv left out); "
                      f"{res['near_duplicates']} flagged as near-duplicates",
                      f"wrote {res['manifest']}", f"wrote {res['subset']}"])
    return EXIT_OK


def _cmd_ingest(args: argparse.Namespace) -> int:
    from hzsr.dataset.interop import ingest_camerafusion

    res = ingest_camerafusion(args.folder, args.out, compression=args.compression, shard_size=args.shard_size,
                              progress=not args.quiet)
    _emit(args, res, [f"ingested {res['captures']} pairs ({res['without_reference']} without a reference phone) "
                      f"from {args.folder}", f"wrote {res['manifest']}", f"wrote {res['splits']}"])
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    if args.format == "hf":
        from hzsr.dataset.hf_export import export_hf

        res = export_hf(args.dir, args.out, split=args.split, progress=not args.quiet)
        _emit(args, res, [f"exported {res['captures']} captures to {args.out} (load with {res['load_with']})",
                          f"wrote {args.out}"])
        return EXIT_OK
    from hzsr.dataset.interop import export_folders

    res = export_folders(args.dir, args.out, split=args.split, progress=not args.quiet)
    _emit(args, res, [f"exported {res['captures']} captures to {args.out} ({res['rejected']} rejected in "
                      "labels.csv left out)", f"wrote {res['meta_info']}"])
    return EXIT_OK
