"""``hzsr dataset info``: counts and sizes by scene kind, tag, verdict and device (from the manifest).

It also flags stale captures: those whose session's ``sync.csv`` / ``qa.csv`` now hold other
results than the ones they were packed with (``freshness.py``); packing the sessions again
refreshes them without re-encoding pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hzsr.dataset.freshness import stale_report
from hzsr.dataset.manifest import load_manifest


def _table(df: pd.DataFrame, col: str) -> dict[str, dict[str, float]]:
    g = df.groupby(col, dropna=False)
    out = {}
    for key, sub in g:
        name = "(none)" if (isinstance(key, float) and key != key) or key is None else str(key)
        out[name] = {"captures": int(len(sub)), "mb_stored": float(sub["bytes_stored"].sum()) / 1e6,
                     "mb_raw": float(sub["bytes_raw"].sum()) / 1e6}
    return out


def dataset_info(root: str | Path) -> dict[str, Any]:
    df = load_manifest(root).copy()
    for c in ("bytes_stored", "bytes_raw"):
        if c not in df.columns:
            df[c] = 0
    tags = df.assign(tag=df["scene_tags"].fillna("").str.split(";")).explode("tag")
    tags["tag"] = tags["tag"].replace("", "(untagged)")
    dev = df.melt(id_vars=["capture_id", "bytes_stored", "bytes_raw"],
                  value_vars=[c for c in ("main_W_model", "ref_T_model") if c in df.columns],
                  var_name="slot", value_name="device_model")
    dev = dev.drop_duplicates(["capture_id", "device_model"])
    verdict = df["verdict"] if "verdict" in df.columns else pd.Series(["(none)"] * len(df))
    return {
        "dataset": str(root), "captures": int(len(df)), "shards": int(df["shard"].nunique()),
        "sessions": int(df["session_id"].nunique()), "scenes": int(df["scene_id"].nunique()),
        "mb_stored": float(df["bytes_stored"].sum()) / 1e6, "mb_raw": float(df["bytes_raw"].sum()) / 1e6,
        "without_reference": int((~df["has_reference"].astype(bool)).sum()) if "has_reference" in df else 0,
        "by_kind": _table(df, "scene_kind"), "by_tag": _table(tags, "tag"),
        "by_verdict": _table(df.assign(verdict=verdict.fillna("(none)")), "verdict"),
        "by_device": _table(dev, "device_model") if len(dev) else {},
        "freshness": stale_report(root),
    }


def format_info(info: dict[str, Any]) -> list[str]:
    lines = [f"{info['dataset']}: {info['captures']} captures, {info['scenes']} scenes, {info['sessions']} sessions, "
             f"{info['shards']} shards, {info['mb_stored']:.1f} MB on disk ({info['mb_raw']:.1f} MB decoded), "
             f"{info['without_reference']} without a reference phone"]
    for key, title in (("by_kind", "scene kind"), ("by_tag", "tag"), ("by_verdict", "verdict"),
                       ("by_device", "device")):
        lines.append(f"by {title}:")
        for name, v in sorted(info[key].items()):
            lines.append(f"  {name:<24} {v['captures']:>6} captures {v['mb_stored']:>10.1f} MB")
    fr = info.get("freshness") or {}
    if fr.get("unknown"):
        lines.append(f"freshness: unknown: {fr['unknown']}")
    else:
        stale = fr.get("stale", [])
        lines.append(f"freshness: {len(stale)} of {fr.get('checked', 0)} captures stale"
                     + (" (their session's sync/QA results changed since packing; pack the same sessions "
                        f"into {info['dataset']} again to refresh them, pixels untouched)" if stale else ""))
        for s in stale[:10]:
            lines.append(f"  stale: {s['capture_id']}: {', '.join(s['changed'])} changed")
        if len(stale) > 10:
            lines.append(f"  ... and {len(stale) - 10} more (--json lists them all)")
        for d in fr.get("sessions_missing", []):
            lines.append(f"  not checked: session folder {d} is gone")
    return lines
