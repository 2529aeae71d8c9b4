"""What operators run: the ``salespulse`` CLI, the demo and its board, the generator, the
embedded broker, the benchmark and its naive reference."""
