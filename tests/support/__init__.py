"""Test support: shared services, private brokers and a fault-injecting TCP proxy."""
