"""Throughput benchmarks for weir (``make bench``); they print figures and never assert on timing."""
