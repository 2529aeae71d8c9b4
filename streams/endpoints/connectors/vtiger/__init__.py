"""The vtiger poller: vtiger's open-source edition has no webhook task, so SalesPulse pulls.

``salespulse connect vtiger`` polls the CRM's REST webservice (:mod:`.client`), turns what
changed into canonical events (:mod:`.records`, with :mod:`.directory` for the accounts
that records point at), and produces them exactly once: the cursor and the memory of
emitted facts live in a compacted Kafka topic (:mod:`.state`), written only after the
broker has acknowledged the events they cover (:mod:`.poller`). :mod:`.service` runs the
loop with backoff and serves the connector's metrics (:mod:`.metrics`).
"""
