"""Checkpoint coordination: the coordinator (pure), the completed-checkpoint store and metadata."""
