"""Grouper plugins, one module per workload family, with KAI's rules.

Every grouper is ``fn(ctx, top, pod, owners) -> PodGroupMetadata``: ``top`` is the top
owner (``kai.podgrouper.objects.Obj``; the pod itself for a bare pod), ``owners`` the chain
nearest first (top owner last). ``kai.podgrouper.hub`` maps an owner's group/version/kind to
its grouper; a grouper raises ``GroupingError`` when the pod cannot be grouped.
"""
