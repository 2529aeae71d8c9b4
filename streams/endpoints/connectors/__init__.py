"""Vendor connectors: one small module per CRM or survey tool, mapping its payloads to events.

Each vendor module is a pure mapping from the vendor's payload to canonical events plus the
check of the vendor's authentication. Nothing heavy is imported here, so importing one
connector never pulls in the others or the web server.
"""
