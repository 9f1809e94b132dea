"""The back-office and operations systems: each an actor with a small public API on the fabric."""
