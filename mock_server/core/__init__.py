"""Transport-free core: contracts, calls, journal, outcomes. No Flask, no sockets."""
