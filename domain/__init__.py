"""The CSMS domain: charging stations and transactions, in one vocabulary for all OCPP versions.

Nothing here knows about OCPP versions, WebSockets or SQL.
"""
