"""Read models: each projection folds the CSMS events into its own PostgreSQL tables."""
