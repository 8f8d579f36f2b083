"""What operators watch: Prometheus metrics (``observability.metrics``) and JSON-lines logs
with a request id and scrubbed secrets (``observability.logs``). Imported by the channels,
the workers and the composition root; ``core`` never imports it (docs/operators/monitoring.md)."""
