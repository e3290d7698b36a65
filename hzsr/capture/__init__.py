"""Rig control over ADB, and (in ``capture.virtual``) the virtual phones and scene simulator."""
