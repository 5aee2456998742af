"""The JobManager daemon: the control plane."""
