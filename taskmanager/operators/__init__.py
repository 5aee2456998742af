"""Runtime operators. Each processes whole buffers: ``process_batch(values, timestamps)`` and emits whole
buffers to its output (the next operator of the chain, or the task's record writers)."""
