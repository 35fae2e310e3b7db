"""Vector collections the gateway watches: health checks, adoption, search, the example."""
