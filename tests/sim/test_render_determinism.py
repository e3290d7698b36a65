"""A session's pixels depend on its seed alone, not on what the process rendered before."""

import cv2

from hzsr.sim.simsession import SimConfig, simulate_session


def test_a_session_renders_the_same_after_other_work_in_the_process(tmp_path):
    cfg = SimConfig(captures=1, seed=3, size=(160, 120), kinds=("architecture",))
    a = simulate_session(tmp_path / "a", cfg, progress=False)
    # Whatever else ran in between (another session, qa's k-means reseeding OpenCV's RNG) ...
    simulate_session(tmp_path / "other", SimConfig(captures=1, seed=4, size=(160, 120)), progress=False)
    cv2.setRNGSeed(1234)
    b = simulate_session(tmp_path / "b", cfg, progress=False)
    for slot in ("main_W", "main_T", "ref_T"):
        assert (a / "captures" / "c00000" / f"{slot}.jpg").read_bytes() == \
            (b / "captures" / "c00000" / f"{slot}.jpg").read_bytes(), slot
