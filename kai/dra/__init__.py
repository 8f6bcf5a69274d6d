"""Dynamic Resource Allocation: device inventories, CEL selectors and the structured allocator.

Layering: imports only :mod:`kai.api` and :mod:`kai._fast`, so the cache (which feeds it) and
the framework (which calls it during a session) can both use it. Modules:

- :mod:`kai.dra.semver`, :mod:`kai.dra.cel`: the CEL environment kube-scheduler gives device
  selectors (``device.driver/attributes/capacity``, ``quantity()``, ``semver()``), backed by
  cel-expr-python (Google's cel-cpp);
- :mod:`kai.dra.selector`: compiles common selector shapes to predicates over the inventory's
  attribute columns, falling back to the CEL library for anything else;
- :mod:`kai.dra.inventory`: ResourceSlices -> flat per-node device arrays;
- :mod:`kai.dra.allocator`: claims -> feasible-node masks and device picks, with undo tokens.

See docs/dra.md for the API the scheduler core calls.
"""
