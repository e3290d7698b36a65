"""Rig control over ADB: the host side of a capture (the virtual phones are ``hzsr.vphone``)."""
