"""Scheduler config: KAI's queueLabelKey."""
from __future__ import annotations

import pytest

from kai.config import ConfigError, check_label_key, parse_config


def test_queue_label_key():
    assert parse_config({}).queue_label_key == "kai.scheduler/queue"
    assert parse_config({"queueLabelKey": "runai/queue"}).queue_label_key == "runai/queue"
    assert parse_config({"queueLabelKey": "team"}).queue_label_key == "team"


@pytest.mark.parametrize("bad", ["", "a b", "/x", "Bad_Prefix/x", "x/", 3, None, "a/" + "n" * 64])
def test_bad_queue_label_key(bad):
    with pytest.raises(ConfigError, match="queueLabelKey"):
        parse_config({"queueLabelKey": bad}, "conf.yaml")
    with pytest.raises(ConfigError):
        check_label_key(bad, "--queue-label-key")
