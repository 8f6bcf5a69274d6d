"""kai: a Kubernetes batch scheduler for GPU and AI/ML workloads, compatible with KAI-Scheduler."""

__version__ = "0.1.0"
