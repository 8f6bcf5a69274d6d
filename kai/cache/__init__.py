"""Cluster state: the in-memory model fed by informers (live) or manifests (simulate).

Only ``kai.cache.watch`` / ``kai.cache.binder`` / ``kai.cache.status`` talk to the API
server; ``node_table`` and ``cluster_state`` are pure in-memory structures.
"""
