"""kai: a Kubernetes batch scheduler for GPU and AI/ML workloads, compatible with KAI-Scheduler."""

__version__ = "0.1.0"

import logging as _logging

import structlog as _structlog

if not _structlog.is_configured():
    # quiet by default for library use; the CLI reconfigures from -v
    _structlog.configure(wrapper_class=_structlog.make_filtering_bound_logger(_logging.WARNING))
