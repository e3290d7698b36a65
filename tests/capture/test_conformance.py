"""hzsr rig conformance: passes on the virtual phone, names the rule when the agent breaks one."""

import json
import subprocess
import sys

import pytest

from hzsr.capture.conformance import RULES, run_conformance
from hzsr.capture.link import RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig, parse_faults

pytestmark = pytest.mark.adb


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    # One scene for the whole module, so no rule's frames straddle the world's cut to a new scene;
    # 3a.manual_honoured retakes its frames when they do (tested below with cuts fired on capture events).
    cfg = VirtualRigConfig(size=(320, 240), seed=5, scene_duration_s=3600.0)
    r = VirtualRig(tmp_path_factory.mktemp("conf"), cfg).start()
    yield r
    r.stop()


def _cli(rig, *args):
    return subprocess.run([sys.executable, "-m", "hzsr.cli", "rig", "conformance", "--rig", str(rig.rig_yaml),
                           *args], capture_output=True, text=True, timeout=240)


def test_passes_on_the_virtual_phone(rig):
    r = _cli(rig, "--role", "main", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got = json.loads(r.stdout)["main"]
    assert [x["rule"] for x in got] == [name for name, _ in RULES]
    assert {x["status"] for x in got} == {"pass"}


AGENT_BOOKKEEPING = {"hello.fields", "capture.ack", "capture.exists", "capture.session_keyed",
                     "error.target_in_past", "error.target_too_far", "list", "list.pending", "cancel", "delete"}


@pytest.mark.parametrize("fault, rules", [
    ("done_first", {"capture.done_last"}),
    ("time_outside_rtt", {"time.within_rtt"}),
    ("ignore_3a", {"3a.manual_honoured", "3a.af_fixed"}),
    ("ids_across_sessions", {"capture.session_keyed"}),
    ("list_started_only", {"list.pending"}),
    ("unbounded_lead", {"error.target_too_far"}),
    ("no_cancel", {"cancel", "capture.session_keyed"}),  # that rule cancels one of its two
])
def test_injected_fault_fails_the_rule(rig, fault, rules):
    phone = rig.phone("reference")
    phone.call(lambda: setattr(phone.agent.faults, fault, True))
    # The older faults run the whole suite (no other rule may fail); the agent-bookkeeping ones,
    # whose rules need no images, run the rules that look at captures' bookkeeping.
    only = None if fault in ("done_first", "time_outside_rtt", "ignore_3a") else AGENT_BOOKKEEPING
    try:
        link = RigLink(load_rig(rig.rig_yaml))
        res = run_conformance(link, "reference", only=only)
        link.close()
    finally:
        phone.call(lambda: setattr(phone.agent.faults, fault, False))
    failed = {r.rule for r in res if r.status == "fail"}
    assert failed == rules, [(r.rule, r.status, r.detail) for r in res]  # that rule, and only it


def test_cli_names_the_failed_rule_and_exits_1(rig):
    phone = rig.phone("main")
    phone.call(lambda: setattr(phone.agent.faults, "time_outside_rtt", True))
    try:
        r = _cli(rig, "--role", "main")
    finally:
        phone.call(lambda: setattr(phone.agent.faults, "time_outside_rtt", False))
    assert r.returncode == 1
    assert "fail  time.within_rtt" in r.stdout and "failed: main:time.within_rtt" in r.stdout
    assert "pass  framing.one_json_line" in r.stdout and "\nfail: " in r.stdout


def test_v1_agent_skips_3a_rules(rig):
    phone = rig.phone("main")
    phone.call(lambda: setattr(phone.agent, "protocol_version", 1))
    try:
        link = RigLink(load_rig(rig.rig_yaml))
        res = {r.rule: r.status for r in run_conformance(link, "main")}
        link.close()
    finally:
        phone.call(lambda: setattr(phone.agent, "protocol_version", 2))
    assert {v for k, v in res.items() if k.startswith("3a.")} == {"skip"}
    assert "fail" not in res.values()


def test_fault_names_and_bad_role(rig):
    assert [f.name for f in parse_faults("done_first@main,time_outside_rtt,ignore_3a,protocol_v1")] == [
        "done_first", "time_outside_rtt", "ignore_3a", "protocol_v1"]
    r = _cli(rig, "--role", "left")
    assert r.returncode == 2 and "--role" in r.stderr and "Traceback" not in r.stderr


def test_every_rule_is_documented():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "agent-protocol.md").read_text()
    assert {name for name, _ in RULES} <= set(re.findall(r"\[rule: ([a-z0-9_.]+)\]", doc))


def _scene_cut_on_capture(rig, monkeypatch, scenes: list[int]):
    """Hold the virtual world on ``scenes[k]`` once the suite's capture k has finished (the last
    one for the rest): a scene cut fired by the protocol's capture events, not by a timer."""
    from hzsr.capture.conformance import Suite
    from hzsr.sim.world import write_crew_action

    rig_dir = rig.world.crew_path.parent
    orig, done = Suite.capture, []

    def capture(self, cameras=None):
        got = orig(self, cameras)
        write_crew_action(rig_dir, scene=scenes[min(len(done), len(scenes) - 1)])
        done.append(got[0])
        return got

    monkeypatch.setattr(Suite, "capture", capture)
    return rig_dir, done


@pytest.mark.parametrize("scenes, status", [
    ([2], "pass"),  # cut between the first dark and the bright frame, then still: retaken, passes
    ([2, 0, 2, 0, 2, 0, 2, 0, 2, 0], "fail"),  # a cut between every frame: never compared, says why
])
def test_manual_honoured_never_compares_two_scenes(rig, monkeypatch, scenes, status):
    from hzsr.sim.world import write_crew_action

    rig_dir, done = _scene_cut_on_capture(rig, monkeypatch, scenes)
    write_crew_action(rig_dir, scene=0)  # a portrait first, then a landscape (index 2), ...
    try:
        link = RigLink(load_rig(rig.rig_yaml))
        # framing.one_json_line reads the hello (protocol version) the 3A rules need
        hello, res = run_conformance(link, "main", only={"framing.one_json_line", "3a.manual_honoured"})
        link.close()
    finally:
        write_crew_action(rig_dir, scene=None)
    assert hello.status == "pass" and res.status == status, res
    if status == "pass":
        assert len(done) == 6 and "retried after the frames disagreed" in res.detail, (done, res.detail)
    else:
        assert len(done) == 9 and "the frames disagree within each of 3 tries" in res.detail, res.detail


def _synthetic_suite(monkeypatch, frames):
    """A Suite whose agent answers get_3a and whose T frames are ``frames`` in turn (no phone)."""
    import numpy as np

    from hzsr.capture.conformance import Suite

    suite = Suite(link=None, role="main", hello={"protocol_version": 2})
    monkeypatch.setattr(suite, "req", lambda cmd, **kw: {"cameras": {"T": {
        "exposure_time_ns": 10_000_000, "iso": 100, "wb_gains": [2.0, 1.0, 1.0, 1.5]}}})
    it = iter(frames)
    monkeypatch.setattr(suite, "_manual_frame", lambda *a: next(it).astype(np.float64))
    return suite


def test_manual_honoured_on_a_grey_card_and_on_images_that_lag_the_settings(monkeypatch):
    import numpy as np

    from hzsr.capture.conformance import RuleFailed, Suite

    rng = np.random.default_rng(0)
    dark = np.full((240, 320), 90.0)
    bright = 255 * (2 * (dark / 255) ** 2.2) ** (1 / 2.2)
    vignette = 1 - 0.1 * np.hypot(*np.meshgrid(np.linspace(-1, 1, 320), np.linspace(-1, 1, 240)))

    def shot(v):
        return np.clip(v * vignette + rng.normal(0, 2, v.shape), 0, 255).round()

    # A flat grey card (noise and 10 % vignetting): no texture to correlate, still every block agrees.
    got = Suite.rule_3a_manual_honoured(_synthetic_suite(monkeypatch, [shot(dark), shot(bright), shot(dark)]))
    assert got.startswith("2x exposure -> x2.0") and "1.00 of them alike" in got, got
    # Images that ignore the settings: every block alike at x1, and the rule says so.
    with pytest.raises(RuleFailed, match="do not follow the settings"):
        Suite.rule_3a_manual_honoured(_synthetic_suite(monkeypatch, [shot(dark)] * 3))
    # Images one frame behind the settings (each frame shows the exposure asked one capture
    # earlier): the dark frames never agree, and the failure names the lag beside a scene change.
    asked = [dark, bright, dark] * 3
    with pytest.raises(RuleFailed, match="within each of 3 tries.*or the images lag the settings"):
        Suite.rule_3a_manual_honoured(_synthetic_suite(monkeypatch, [shot(v) for v in [dark, *asked[:-1]]]))
