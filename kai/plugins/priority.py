"""priority: within a queue, jobs with a higher PriorityClass value go first."""
from kai.framework.plugin import Plugin, register_plugin


@register_plugin
class Priority(Plugin):
    name = "priority"

    def on_session_open(self, ssn) -> None:
        ssn.job_order_keys.append(lambda job: -job.priority)
