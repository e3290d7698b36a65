"""``hzsr dataset browse``'s server over HTTP: filters, pixels from tiles, labels, and hostile requests.

Path traversal and hostile query strings: every request in the lists below must be refused
(400/403/404/413/415) without serving a byte of a file outside the data set (a marker file beside
it must never appear in an answer) and without running anything (a query that would create a
file must not create it).
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from hzsr.browse.server import Browser, BrowseServer
from hzsr.browse.tiles import TileConfig
from hzsr.dataset.labels import LABELS
from hzsr.dataset.reader import ShardReader
from tests.dataset.browse_data import browse_dataset, copy_dataset

SECRET = "hzsr-secret-marker-7d1f"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    (root / "secret.txt").write_text(SECRET)  # beside the data set: must never be served
    return copy_dataset(browse_dataset(tmp_path_factory), root / "ds")


@pytest.fixture(scope="module")
def server(ds):
    srv = BrowseServer(Browser(ds, TileConfig(window_px=256)))  # T is 400x300: room to move both ways
    srv.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    h = {"Host": f"127.0.0.1:{server.server_address[1]}", **(headers or {})}
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in h.items():
        conn.putheader(k, v)
    if body is not None and "Content-Length" not in h:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data, dict(r.getheaders())


def get_json(server, path: str) -> dict:
    status, data, _ = request(server, "GET", path)
    assert status == 200, data[:300]
    return json.loads(data)


def post_label(server, cid: str, label: str | None, reason: str, **headers) -> tuple[int, dict]:
    body = json.dumps({"id": cid, "label": label, "reason": reason}).encode()
    status, data, _ = request(server, "POST", "/api/label", body, {"Content-Type": "application/json", **headers})
    return status, json.loads(data)


def test_bound_to_loopback_and_the_cli_shows_the_port(server, ds):
    assert server.server_address[0] == "127.0.0.1"
    p = subprocess.Popen([sys.executable, "-m", "hzsr.cli", "dataset", "browse", str(ds), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/ ", line)
        assert m and int(m.group(1)) > 0, line + p.stderr.read() if p.poll() is not None else line
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=30)
        conn.request("GET", "/api/revision")
        assert conn.getresponse().status == 200
    finally:
        p.terminate()
        p.wait(timeout=30)


@pytest.mark.parametrize("query, mask", [
    ("verdict=fail", lambda m: m["verdict"] == "fail"),
    ("kind=moving", lambda m: m["scene_kind"] == "moving"),
    ("tag=static", lambda m: m["scene_tags"].fillna("").str.split(";").map(lambda t: "static" in t)),
    ("reason=large_shift", lambda m: m["qa_codes"].fillna("").str.split(";").map(lambda t: "large_shift" in t)),
    ("split=(none)", lambda m: pd.Series(True, index=m.index)),
    ("kind=portrait&verdict=pass", lambda m: (m["scene_kind"] == "portrait") & (m["verdict"] == "pass")),
    ("q=" + "scene_kind%20in%20%5B'landscape'%2C%20'moving'%5D",
     lambda m: m["scene_kind"].isin(["landscape", "moving"])),
])
def test_filters_select_what_pandas_selects(server, ds, query, mask):
    man = pd.read_csv(ds / "manifest.csv")
    want = man.loc[mask(man).astype(bool), "capture_id"].tolist()
    got = get_json(server, f"/api/captures?{query}")
    assert [r["capture_id"] for r in got["rows"]] == want and got["matched"] == len(want) and got["total"] == len(man)
    assert want  # every filter above selects something in this data set


def test_facets_count_the_whole_data_set(server, ds):
    man = pd.read_csv(ds / "manifest.csv")
    f = get_json(server, "/api/captures")["facets"]
    assert f["verdict"] == man["verdict"].value_counts().to_dict()
    assert f["kind"] == man["scene_kind"].value_counts().to_dict()


def test_near_duplicate_clusters(server, ds):
    """Two captures per scene from one viewpoint: each scene's pair is a cluster (pHash equal)."""
    man = pd.read_csv(ds / "manifest.csv", dtype={"phash_main_W": str})
    d = get_json(server, f"/api/capture?id={man['capture_id'][0]}")
    same = man.loc[(man["phash_main_W"] == man["phash_main_W"][0]) & (man.index > 0), "capture_id"].tolist()
    assert d["cluster"] == same and same
    rows = get_json(server, "/api/captures?dup=1")["rows"]
    assert len(rows) >= 2 and rows[0]["cluster"] == man["capture_id"][0] and rows[0]["cluster_size"] == len(same) + 1
    keys = [r["cluster"] for r in rows]
    assert keys == sorted(keys)  # one cluster after another: members side by side


def test_thumbnail_reads_only_the_w_crop_tiles(server, ds, monkeypatch):
    tiles = server.app.tiles
    cid = "sA/c00005"
    seen: list[tuple] = []
    real = ShardReader.read_patch

    def spy(self, capture_id, slot, y, x, h, w):
        seen.append((slot, h, w))
        return real(self, capture_id, slot, y, x, h, w)

    monkeypatch.setattr(ShardReader, "read_patch", spy)
    status, data, headers = request(server, "GET", f"/img/thumb?id={cid}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    full = ShardReader(ds).read(cid).main_W
    [(slot, h, w)] = seen  # one patch read, of W, a fraction of the frame
    assert slot == "main_W" and h * w < 0.1 * full.shape[0] * full.shape[1]
    r = tiles.crop_rect(cid)
    ref = full[int(r.y0):int(r.y0) + h, int(r.x0):int(r.x0) + w]
    ref = cv2.resize(ref, (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_AREA)
    assert cv2.PSNR(ref, np.ascontiguousarray(thumb)) > 28  # the W crop, not something else
    request(server, "GET", f"/img/thumb?id={cid}")
    assert len(seen) == 1  # the second request came from the cache


def test_window_is_one_to_one_tiles_with_maps(server, ds):
    cid = "sA/c00002"
    w = get_json(server, f"/api/window?id={cid}&x=40&y=20")
    assert w["views"] == ["W", "T", "R", "wt", "wr"] and w["origin"][:2] == [40, 20]
    assert w["notes"]["wt"].startswith("shift ")
    x, y, ww, hh = w["origin"]
    status, data, _ = request(server, "GET", f"/img/window?id={cid}&view=T&x={x}&y={y}")
    got = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    want = ShardReader(ds).read(cid).main_T[y:y + hh, x:x + ww]
    assert got.shape == want.shape and cv2.PSNR(want, np.ascontiguousarray(got)) > 30
    # clamped inside T, however far out the request asks
    t_width = ShardReader(ds).shape(cid, "main_T")[1]
    assert get_json(server, f"/api/window?id={cid}&x=999999&y=0")["origin"][0] == t_width - ww


def test_label_round_trip_and_revision(server, ds):
    rev0 = get_json(server, "/api/revision")["revision"]
    status, out = post_label(server, "sA/c00006", "rejected", "rig bumped between W and T")
    assert status == 200 and out["revision"] != rev0
    assert get_json(server, "/api/revision")["revision"] == out["revision"]
    rows = get_json(server, "/api/captures?label=rejected")["rows"]
    assert [(r["capture_id"], r["label_reason"]) for r in rows] == [("sA/c00006", "rig bumped between W and T")]
    status, out = post_label(server, "sA/c00006", "rejected", "")
    assert status == 400 and out["error"].startswith("reason: ")
    status, out = post_label(server, "sA/c00006", None, "")
    assert status == 200 and get_json(server, "/api/captures?label=rejected")["matched"] == 0


TRAVERSAL = [
    "/../secret.txt", "/../../secret.txt", "/%2e%2e/secret.txt", "/%2e%2e%2fsecret.txt", "/..%2f..%2fsecret.txt",
    "//etc/passwd", "/etc/passwd", "/static/../../secret.txt", "/index.html", "/manifest.csv", "/labels.csv",
    "/shards/shard-00000.h5", "/img/thumb?id=../secret.txt", "/img/thumb?id=..%2Fsecret.txt",
    "/img/thumb?id=%2Fetc%2Fpasswd", "/api/capture?id=../../secret.txt", "/img/window?id=sA/c00000&view=../../secret",
    "/img/window?id=sA/c00000&view=%00", "/api/capture?id=sA%2F..%2F..%2Fsecret.txt",
    "/img/thumb?id=sA/../../secret.txt",
    "/api/captures/../../secret.txt", "/%00", "/?x=1",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_no_file_outside_the_data_set_is_served(server, path):
    status, data, _ = request(server, "GET", path)
    assert status in (400, 404), (status, data[:200])
    assert SECRET.encode() not in data and b"root:" not in data
    json.loads(data)  # a one-line JSON error, not a file


HOSTILE = [
    "/api/captures?verdict=fail&verdict=pass", "/api/captures?evil=1", "/api/captures?offset=-1",
    "/api/captures?limit=100000", "/api/captures?limit=1e3", "/api/captures?q=" + "a" * 5000,
    "/api/captures?q=%40os.system('touch%20MARKER')%20%3D%3D%200", "/api/captures?q=__import__('os')",
    "/api/captures?q=verdict%00", "/api/captures?q=%ff%fe", "/api/window?id=sA/c00000&x=1e9",
    "/api/window?id=sA/c00000&x=-5", "/api/captures?" + "&".join(f"k{i}=1" for i in range(40)),
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_query_strings_are_one_line_400s(server, path, ds):
    status, data, _ = request(server, "GET", path)
    assert status == 400, (status, data[:200])
    err = json.loads(data)["error"]
    assert "\n" not in err and len(err) < 600
    assert not (ds / "MARKER").exists() and not list(ds.parent.glob("MARKER"))


def test_other_sites_cannot_reach_or_label(server, ds):
    port = server.server_address[1]
    assert request(server, "GET", "/api/revision", headers={"Host": f"evil.example:{port}"})[0] == 403
    before = (ds / LABELS).read_bytes() if (ds / LABELS).exists() else None
    assert post_label(server, "sA/c00001", "rejected", "x", Origin="http://evil.example")[0] == 403
    body = json.dumps({"id": "sA/c00001", "label": "rejected", "reason": "x"}).encode()
    assert request(server, "POST", "/api/label", body, {"Content-Type": "text/plain"})[0] == 415
    assert request(server, "POST", "/api/label", b"{" * 20000, {"Content-Type": "application/json"})[0] == 400
    assert request(server, "POST", "/api/label", b"[1]", {"Content-Type": "application/json"})[0] == 400
    assert post_label(server, "sA/../x", "rejected", "x")[0] == 404
    after = (ds / LABELS).read_bytes() if (ds / LABELS).exists() else None
    assert after == before
    _, _, headers = request(server, "GET", "/")
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
