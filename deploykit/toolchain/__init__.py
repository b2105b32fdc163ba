"""Stage 3: the toolchain. PlatformIO as a subprocess (build, upload), flashing, and finding connected boards."""
