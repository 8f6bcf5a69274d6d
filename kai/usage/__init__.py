"""Time-based fair share's model: ``usageDBConfig`` (:mod:`kai.usage.model`), KAI's windows,
decay and normalisation over a bounded usage history, and cron strings (:mod:`kai.usage.cron`).

Pure and self-contained (imports nothing else from kai), one layer below ``kai.api`` and
``kai.config`` so both may use it: the config parses ``usageDBConfig`` with it, the cache's
usage DB (``kai.cache.usage_db``) and the simulator compute usage with it.
"""
