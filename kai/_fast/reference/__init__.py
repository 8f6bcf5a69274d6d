"""Pure-Python/numpy references of the kernels in kai._fast, one module per kernel."""
