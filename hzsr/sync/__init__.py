"""Timing checks: map sensor timestamps to the host clock, measure skew, pair frames."""
