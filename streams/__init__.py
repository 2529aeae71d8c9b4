"""Everything that moves data: faust app, topics, codec, broker, ingest, export and CLI."""
