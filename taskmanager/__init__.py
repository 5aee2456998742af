"""The TaskManager daemon and its slot worker processes."""
