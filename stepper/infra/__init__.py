"""Plumbing used by every part and using none of them: Redis connections and keys, Lua scripts, HTTP sessions,
the SSRF guard, redaction, logs, tracing, metrics counters, streams and artifacts."""
