"""Stage 2: the firmware. Render a PlatformIO project for a manifest and a board (boards/, templates, C filters)."""
