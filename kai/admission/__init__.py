"""Admission webhook for pods: KAI-Scheduler's gpusharing and runtimeenforcement plugins.

See :mod:`kai.admission.webhook` (``kai webhook`` on the command line).
"""
from kai.admission.webhook import (AdmissionConfig, WebhookServer, mutate_pod, review, validate_pod)

__all__ = ["AdmissionConfig", "WebhookServer", "mutate_pod", "review", "validate_pod"]
