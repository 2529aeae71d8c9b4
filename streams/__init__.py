"""Everything that moves data, by role: ``pipeline`` (every event's path through a worker),
``endpoints`` (HTTP, SDK, metrics), ``kafka`` (topics and end offsets, below both),
``tools`` (CLI, demo, bench) and ``report`` (the digest)."""
