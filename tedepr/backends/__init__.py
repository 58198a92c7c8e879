"""Framework backends. Each is imported only on demand: ``import tedepr`` imports neither."""
