"""Rig control over ADB: the host side of a capture.

The private adb server, the link to each phone's agent, clock sync, the synchronized trigger and
verified pull into a session folder, resume and purge, ``rig doctor`` and ``rig conformance``.
The virtual phones that stand in for real ones are ``hzsr.vphone``; the host code here reaches
them only over ADB, exactly as it reaches phones. See ``docs/crew-guide.md``.
"""
