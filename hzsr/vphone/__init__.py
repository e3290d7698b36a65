"""Virtual phones: the phone side of a rig, for where no phones are plugged in.

Each virtual phone speaks the real ADB device protocol (``adb_device``: the adbd side; ``shell``,
``toybox``, ``storage``: what host scripts reach through it) and serves the capture agent
(``agent``: ``docs/agent-protocol.md``) rendering ``hzsr.sim``'s world through the camera's 3A
loops (``hzsr.sim.three_a``).
``virtual_rig`` attaches them to the host's private adb server and runs ``hzsr rig up --virtual``
(``cli``). A package of its own, not part of ``capture``: host code must drive these phones only
over ADB, as it drives real ones, so ``capture`` never imports it.
"""
