"""Delivery of the pipeline's outputs: invoices into PostgreSQL, signed webhooks. Never billing."""
