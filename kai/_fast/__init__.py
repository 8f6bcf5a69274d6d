"""Compiled kernels over flat cluster arrays.

Nothing here imports from the rest of kai. Each ``*.pyx`` has a ``.pxd`` with shape and
unit comments, a ``.pyi`` stub, and a readable pure-Python twin in ``reference/`` that the
tests compare against on random inputs.
"""
