"""Kafka administration every SalesPulse process shares: the topics it creates and checks
(``admin``) and true end offsets (``offsets``). Below ``pipeline`` and ``endpoints``: it
imports neither, so the worker, the connectors and the CLI all reach Kafka the same way."""
