"""Where data enters and leaves: the worker's HTTP views, ingest, the producer SDK, metrics.

The producer SDK for upstream services is :mod:`salespulse.streams.endpoints.producer`.
"""
