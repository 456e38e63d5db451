"""meterpay: application wiring (settings, web app factory, embedded worker)."""
