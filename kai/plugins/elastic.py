"""elastic: jobs below their gang minimum first, then jobs exactly at it, then the rest."""
from kai.framework.plugin import Plugin, register_plugin


@register_plugin
class Elastic(Plugin):
    name = "elastic"

    def on_session_open(self, ssn) -> None:
        def key(job):
            allocated = job.active_allocated
            if allocated < job.min_member:
                return 0
            return 1 if allocated == job.min_member else 2
        ssn.job_order_keys.append(key)
