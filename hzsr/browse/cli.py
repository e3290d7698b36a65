"""``hzsr dataset browse DIR``: the verb, registered under ``hzsr dataset`` by ``hzsr/cli.py``."""

from __future__ import annotations

import argparse
from typing import Any

from hzsr.core.cliargs import add_folder, add_verb
from hzsr.core.errors import EXIT_OK


def add_browse_verb(dataset_verbs: Any) -> None:
    b = add_verb(dataset_verbs, "browse", "a local web gallery: filter, view and accept/reject captures (labels.csv)",
                 _cmd_browse, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_folder(b, "dir", "data set (or subset) folder")
    b.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    b.add_argument("--dup-distance", type=int, default=6, help="pHash bits for near-duplicate clusters, as curate")
    b.add_argument("--verbose", action="store_true", help="log every request on stderr")


def _cmd_browse(args: argparse.Namespace) -> int:
    from hzsr.browse.server import Browser, BrowseServer
    from hzsr.core.errors import ConfigError

    app = Browser(args.dir, dup_distance=args.dup_distance)
    idx, _ = app.gallery.snapshot()  # a missing or bad manifest stops here, before the port opens
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"expected 0 to 65535, got {args.port}", field="--port")
    try:
        server = BrowseServer(app, args.port, verbose=args.verbose)
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", field="--port") from None
    print(f"serving {args.dir} ({len(idx)} captures) at {server.url}  (127.0.0.1 only; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return EXIT_OK
