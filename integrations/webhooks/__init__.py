"""Outbound partner webhooks (signed POSTs); signing and verification live in core.messaging.webhooks."""
