"""The virtual phone: ADB device side, storage, shell and capture agent, over ``hzsr.sim``'s world."""
