"""The path every event takes through a worker: app, consumer, engine, state, offsets, dedupe.

The app (``app.py``) is the composition root: it builds the runtime and installs the web
views; nothing in here imports it.
"""
