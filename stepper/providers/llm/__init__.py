"""What every LLM adapter shares: token estimates and budgets, the report prompt, the vendor-neutral base."""
