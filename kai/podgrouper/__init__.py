"""Pod-grouper: which PodGroup a pod belongs to, for pods that do not name one."""
