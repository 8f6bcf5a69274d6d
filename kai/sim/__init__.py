"""``kai simulate``: manifests in, the real scheduler's decisions out (no separate logic)."""
