"""Everything that moves data, by role: ``pipeline`` (every event's path through a worker),
``endpoints`` (HTTP, SDK, metrics), ``tools`` (CLI, demo, bench) and ``report`` (the digest)."""
