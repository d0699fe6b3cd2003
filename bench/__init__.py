"""Benchmarks: a load generator for any OCPP-J CSMS, and the references it is compared with."""
