"""``python -m salespulse.streams``: the ``salespulse`` command, for when no script is on PATH."""

from salespulse.streams.tools.cli import main

main()
