"""Node-scale-adjuster: scaling pods that make cluster autoscalers add GPU nodes for kai's
GPU-sharing pods (KAI's ``nodescaleadjuster``). ``calculator`` decides, ``adjuster`` runs the
live loop behind ``kai node-scale-adjuster``. docs/shards.md#node-scale-adjuster."""
