"""Admission webhooks: KAI-Scheduler's pod plugins (gpusharing, runtimeenforcement) and its
Queue and PodGroup validation.

See :mod:`kai.admission.webhook` (``kai webhook`` on the command line) and
:mod:`kai.admission.crd_validation`.
"""
from kai.admission.webhook import (AdmissionConfig, WebhookServer, mutate_pod, review, validate_pod)

__all__ = ["AdmissionConfig", "WebhookServer", "mutate_pod", "review", "validate_pod"]
