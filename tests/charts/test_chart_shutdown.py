"""The chart's pod gives kai time to shut down gracefully (issue 16): terminationGracePeriodSeconds
exceeds the --shutdown-grace-period it passes, with room to release the Lease and exit."""
from __future__ import annotations

from test_chart import container, helm, one, render  # noqa: F401  (helm is a fixture)

from kai.cli import _duration


def test_termination_grace_period_covers_the_shutdown_grace_period(helm):  # noqa: F811
    docs = render(helm)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    args = container(docs)["args"]
    grace = [_duration(a.split("=", 1)[1]) for a in args if a.startswith("--shutdown-grace-period=")]
    assert len(grace) == 1
    assert pod["terminationGracePeriodSeconds"] >= grace[0] + 5
