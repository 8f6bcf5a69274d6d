"""elastic: jobs below their gang minimum first, then jobs exactly at it, then the rest."""
from kai.api import constants as C
from kai.framework.plugin import Plugin, register_plugin


@register_plugin
class Elastic(Plugin):
    name = "elastic"

    def on_session_open(self, ssn) -> None:
        active = C.ACTIVE_ALLOCATED

        def key(job):
            tasks = job.tasks
            if len(tasks) == 1:                   # a single-pod job: its one pod, no generator
                for t in tasks.values():
                    allocated = 1 if t.status & active else 0
            else:
                allocated = job.active_allocated
            if allocated < job.min_member:
                return 0
            return 1 if allocated == job.min_member else 2
        ssn.job_order_keys.append(key)
