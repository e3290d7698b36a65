"""Rig control over ADB: the private adb server, the phones' agents, clock sync, trigger and
verified pull into a session folder, resume and purge, ``rig doctor`` and ``rig conformance``.

``capture.virtual`` holds the virtual phones that stand in for real ones (over ``hzsr.sim``'s
world); the host code here talks to them exactly as it would to phones. See
``docs/crew-guide.md``.
"""
