"""The end-to-end report shows the crew's injected defects beside QA's verdicts (issue 18, item 8)."""

from __future__ import annotations

import pandas as pd

from hzsr.report import _crew_confusion, crew_confusion


def test_confusion_table_counts_verdicts_and_failing_reasons_per_injected_defect():
    qa = pd.DataFrame({
        "capture_id": ["c00000", "c00001", "c00002", "c00003"],
        "verdict": ["pass", "fail", "warn", "fail"],
        "reasons": [None, "fail: large_shift: moved | warn: rejected: x", "warn: focus_mismatch: y",
                    "fail: motion_blur: z"],
    })
    crew = {"c00001": "rig_bump", "c00002": "refocus", "c00003": None}
    t = pd.DataFrame(crew_confusion(qa, crew)).set_index("injected")
    assert t.loc["rig_bump", "fail"] == 1 and t.loc["rig_bump", "failed by"] == "large_shift x1"
    assert t.loc["refocus", "warn"] == 1 and t.loc["refocus", "failed by"] == "-"  # missed: only a warning
    assert t.loc["none", "captures"] == 2 and t.loc["none", "fail"] == 1  # a clean shot failed
    assert list(t.index)[-1] == "none"
    assert _crew_confusion(qa, {}) == "" and crew_confusion(qa, {}) == []  # no scripted crew: no table
    html = _crew_confusion(qa, crew)
    assert "defects beside the verdicts" in html and html.count("<tr") == 1 + 3
