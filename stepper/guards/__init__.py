"""What wraps every provider call: admission (breaker state, rate limits), the breaker, backoff, the choice of
a provider's deployment (routing) and spend budgets."""
