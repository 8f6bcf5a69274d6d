"""Live controller process: informers, leader election, cycle loop, metrics (``kai scheduler``)."""
