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


def _crew_shot(tmp, scene: int, defect: str) -> list[dict]:
    """The virtual rig's truth lines for one shot of ``make demo``'s world (seed 0) with the crew's
    ``defect`` on ``scene``: each spoiled frame rendered as the rig renders it."""
    import json

    import numpy as np

    from hzsr.sim.profiles import get_profile
    from hzsr.sim.world import VirtualWorld, WorldConfig, write_crew_action

    world = VirtualWorld(get_profile("vphone-5x"), WorldConfig(seed=0), tmp / "truth")
    write_crew_action(tmp, scene=scene, defect=defect)
    host = world.crew_action()["since_ns"] + 1.0e9
    for role in ("main", "reference"):
        world.render(role, "T", host, None, np.random.default_rng([7, role == "main"]))
    return [json.loads(x) for x in (tmp / "truth" / "crew_defects.jsonl").read_text().splitlines()]


def test_a_refocus_on_the_architecture_scene_is_labelled_invisible_by_its_true_blur(tmp_path):
    """Issue 18: make demo's refocus (then on scene 1, architecture: the reference phone focused on the sign
    at 10.7 m, the AF subject a facade at 30.4 m) passed both checks. The simulator's own figure says
    why: the facade is blurred 0.70 px in the reference T, under the labelled set's 2 px. The crew
    truth records that figure and the report's table names the shot ``refocus_invisible``; a refocus
    on a near portrait (scene 0) blurs its subject far more and stays ``refocus``."""
    arch = _crew_shot(tmp_path / "a", 1, "refocus")
    assert [r["slot"] for r in arch] == ["ref_T"]  # refocus spoils the reference T only
    assert arch[0]["scene"] == "architecture-0001"
    assert 0.6 < arch[0]["params"]["af_layer_blur_px"] < 0.8  # 0.70 px: the sign's focus keeps the facade sharp
    portrait = _crew_shot(tmp_path / "p", 0, "refocus")
    from hzsr.demo import crew_labels
    from hzsr.sim.defects import VISIBLE_FOCUS_BLUR_PX

    assert portrait[0]["params"]["af_layer_blur_px"] > 2 * VISIBLE_FOCUS_BLUR_PX
    truth = tmp_path / "crew_defects.jsonl"
    truth.write_text((tmp_path / "a" / "truth" / "crew_defects.jsonl").read_text()
                     + (tmp_path / "p" / "truth" / "crew_defects.jsonl").read_text())
    crew = [None, "refocus", "refocus", "rig_bump"]
    scenes = ["architecture-0001", "architecture-0001", "portrait-0000", "moving-0003"]
    assert crew_labels(crew, scenes, truth) == [None, "refocus_invisible", "refocus", "rig_bump"]
    # No truth file (or one from before the figure was recorded): the crew's names as they were.
    assert crew_labels(crew, scenes, tmp_path / "none.jsonl") == crew


def test_one_rule_labels_a_focus_defect_invisible_by_the_frame_it_moved():
    from hzsr.sim.defects import VISIBLE_FOCUS_BLUR_PX as V
    from hzsr.sim.defects import invisible_focus_defect

    assert invisible_focus_defect("refocus", {"ref_T": V, "main_T": 9.0})  # judged by the reference T
    assert not invisible_focus_defect("refocus", {"ref_T": V + 0.1, "main_T": 0.0})
    assert invisible_focus_defect("wrong_depth", {"main_T": 0.5, "ref_T": 9.0})  # judged by main T
    assert not invisible_focus_defect("wrong_depth", {"ref_T": 0.5})  # no figure for its frame: no excuse
    assert not invisible_focus_defect("rig_bump", {"ref_T": 0.0}) and not invisible_focus_defect(None, {})
