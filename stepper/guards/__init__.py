"""What wraps every provider call: admission (breaker state, rate limits), the breaker, backoff."""
