"""Developer and training tools (not imported by the app)."""
