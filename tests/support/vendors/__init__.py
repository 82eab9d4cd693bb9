"""Fake vendors on loopback: each checks requests against the vendor's documented shape and answers in kind."""
