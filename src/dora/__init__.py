"""Dora: share GPU and CPU servers through Kubernetes-style YAML workloads."""

__version__ = "0.9.0"
