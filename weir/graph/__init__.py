"""Transformations and their compilation into a JobGraph: pure, picklable data."""
