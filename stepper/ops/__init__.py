"""Operators' tools over the fleet's state: fleet state, alerts, the dead-letter store, the Prometheus exporter.

Nothing here submits work or loads the tasks."""
