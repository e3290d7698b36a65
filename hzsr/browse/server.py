"""The gallery's HTTP server: the standard library's ``ThreadingHTTPServer`` on 127.0.0.1 only.

Routes (anything else is 404; no route maps a URL onto a file name)::

    GET  /                      the page (static/index.html, from the package)
    GET  /api/captures?FILTERS  a page of captures and the filters' counts (gallery.Gallery.page)
    GET  /api/capture?id=ID     one capture's facts, reasons, label and near-duplicate cluster
    GET  /api/window?id=ID[&x=&y=]  the 1:1 window's origin, scale and registration notes
    GET  /api/revision          the curation file's revision (a tab polls it to see others' labels)
    GET  /img/thumb?id=ID       JPEG thumbnail of the W crop
    GET  /img/window?id=ID&view=W|T|R|wt|wr[&x=&y=]  JPEG of one view of the 1:1 window
    POST /api/label             JSON {"id", "label": "accepted"|"rejected"|null, "reason"}

Safety: the socket is bound to 127.0.0.1 (never a public interface); a request whose ``Host``
is not this server's loopback address and port is refused (a DNS-rebinding page cannot reach
it); a label needs ``Content-Type: application/json`` and, when the browser sends one, this
server's ``Origin`` (another site's page cannot post one: the browser would first ask with a
CORS preflight, which is refused); a capture id must be in the manifest before anything is
read; parameters are a fixed set per route, each given at most once and at most
``MAX_PARAM`` characters long. Errors answer ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hzsr.browse.gallery import FILTERS, Gallery
from hzsr.browse.tiles import TileConfig, TileStore
from hzsr.core.errors import DatasetError

HOST = "127.0.0.1"
MAX_PARAM = 4000
MAX_BODY = 16 << 10
VIEWS = ("W", "T", "R", "wt", "wr")
_PAGE_PARAMS = {*FILTERS, "dup", "q", "offset", "limit"}
#: Route -> the parameters it accepts (any other is a 400).
GET_PARAMS: dict[str, set[str]] = {
    "/": set(), "/api/captures": _PAGE_PARAMS, "/api/capture": {"id"}, "/api/window": {"id", "x", "y"},
    "/api/revision": set(), "/img/thumb": {"id"}, "/img/window": {"id", "x", "y", "view"},
}
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class BadRequest(Exception):
    """A request this server refuses: its status and one line."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class Browser:
    """What one server serves: the gallery's model and its pixels, over one data set."""

    def __init__(self, root: str | Path, tiles: TileConfig | None = None, dup_distance: int = 6):
        self.gallery = Gallery(root, dup_distance=dup_distance)
        self.tiles = TileStore(root, tiles)
        self.page_html = resources.files("hzsr.browse").joinpath("static/index.html").read_bytes()

    def known(self, cid: str | None) -> str:
        """``cid`` if the manifest lists it, else 404: no read happens for anything else."""
        if not cid or not self.gallery.has(cid):
            raise BadRequest(HTTPStatus.NOT_FOUND, f"unknown capture {str(cid)[:80]!r}")
        return cid


def _xy(params: dict[str, str], name: str) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    if not v.isdigit() or len(v) > 7:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name}: expected a pixel coordinate, got {v[:40]!r}")
    return int(v)


class Handler(BaseHTTPRequestHandler):
    """One request; the ``Browser`` is the server's ``app``."""

    server_version = "hzsr-browse"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def app(self) -> Browser:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "private, max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj, default=str, allow_nan=False).encode(), "application/json")

    def _check_host(self) -> None:
        port = self.server.server_address[1]
        if self.headers.get("Host") not in (f"{HOST}:{port}", f"localhost:{port}"):
            raise BadRequest(HTTPStatus.FORBIDDEN, "Host is not this server's loopback address")

    def _params(self, allowed: set[str]) -> dict[str, str]:
        query = urlsplit(self.path).query
        try:
            raw = parse_qs(query, keep_blank_values=True, max_num_fields=32, errors="strict")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"bad query string: {str(exc)[:120]}") from None
        out: dict[str, str] = {}
        for k, vs in raw.items():
            if k not in allowed:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"unknown parameter {k[:40]!r}")
            if len(vs) != 1 or len(vs[0]) > MAX_PARAM:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"{k}: give it once, at most {MAX_PARAM} characters")
            out[k] = vs[0]
        return out

    def _guard(self, work) -> None:
        try:
            self._check_host()
            work()
        except BadRequest as exc:
            self._json({"error": str(exc)}, exc.status)
        except DatasetError as exc:
            status = HTTPStatus.NOT_FOUND if exc.message.startswith("unknown capture") else HTTPStatus.BAD_REQUEST
            self._json({"error": exc.one_line()}, status)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the tab went away
        except Exception as exc:  # noqa: BLE001 - one bad capture must not stop the server
            print(f"hzsr browse: {self.path[:200]}: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._json({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}, 500)

    # -- routes ---------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._guard(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self._guard(self._get)

    def _get(self) -> None:
        route = urlsplit(self.path).path
        if route not in GET_PARAMS:
            raise BadRequest(HTTPStatus.NOT_FOUND, "no such page")
        p = self._params(GET_PARAMS[route])
        app = self.app
        if route == "/":
            self._send(200, app.page_html, "text/html; charset=utf-8")
        elif route == "/api/captures":
            self._json(app.gallery.page(p))
        elif route == "/api/capture":
            self._json(app.gallery.capture(app.known(p.get("id"))))
        elif route == "/api/revision":
            self._json({"revision": app.gallery.revision()})
        elif route == "/img/thumb":
            self._send(200, app.tiles.thumbnail(app.known(p.get("id"))), "image/jpeg", cache=True)
        else:
            cid = app.known(p.get("id"))
            win = app.tiles.window(cid, _xy(p, "x"), _xy(p, "y"))
            if route == "/api/window":
                self._json({"origin": win["origin"], "scale": win["scale"], "notes": win["notes"],
                            "views": [v for v in VIEWS if v in win]})
            else:
                view = p.get("view", "")
                if view not in win or view not in VIEWS:
                    raise BadRequest(HTTPStatus.NOT_FOUND, f"no view {view[:20]!r} for this capture")
                self._send(200, win[view], "image/jpeg", cache=True)

    def do_POST(self) -> None:  # noqa: N802
        self._guard(self._post)

    def _post(self) -> None:
        self.close_connection = True  # a refused request's body may be left unread: never reuse the socket
        if urlsplit(self.path).path != "/api/label":
            raise BadRequest(HTTPStatus.NOT_FOUND, "no such page")
        port = self.server.server_address[1]
        origin = self.headers.get("Origin")
        if origin is not None and origin not in (f"http://{HOST}:{port}", f"http://localhost:{port}"):
            raise BadRequest(HTTPStatus.FORBIDDEN, "labels are taken only from this server's own page")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the label as application/json")
        n = self.headers.get("Content-Length", "")
        if not n.isdigit() or int(n) > MAX_BODY:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length must be given, at most {MAX_BODY}")
        try:
            body = json.loads(self.rfile.read(int(n)))
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
        if not isinstance(body, dict) or not all(isinstance(body.get(k, ""), str) for k in ("id", "reason")) \
                or not (body.get("label") is None or isinstance(body["label"], str)):
            raise BadRequest(HTTPStatus.BAD_REQUEST, 'expected {"id": str, "label": str or null, "reason": str}')
        cid = self.app.known(body.get("id"))
        rev = self.app.gallery.label(cid, body.get("label"), body.get("reason", ""))
        self._json({"revision": rev})


class BrowseServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` bound to 127.0.0.1, carrying its ``Browser``."""

    daemon_threads = True

    def __init__(self, app: Browser, port: int = 0, verbose: bool = False):
        self.app = app
        self.verbose = verbose
        super().__init__((HOST, port), Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def start(self) -> threading.Thread:
        """Serve on a daemon thread (tests, the benchmark); ``shutdown()`` stops it."""
        t = threading.Thread(target=self.serve_forever, name="hzsr-browse", daemon=True)
        t.start()
        return t
