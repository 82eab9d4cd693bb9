"""Helpers shared by the test suite: real servers and workers, started on free ports."""
