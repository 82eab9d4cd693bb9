"""The deployment's settings for stepper (Celery's conventional config module).

Edit here; stepper's packaged defaults (stepper/defaults.py) fill in anything left out, so a worker
installed without this file still starts. These environment variables override this file:

    STEPPER_REDIS_URL           broker and result backend (default redis://127.0.0.1:6379/0)
    STEPPER_MODE                live | mock | hybrid
    STEPPER_CHAIN_<KIND>        e.g. STEPPER_CHAIN_CHAT=openai:gpt-4o-mini,gemini:gemini-2.0-flash
    STEPPER_<PROVIDER>_BASE_URL e.g. STEPPER_OPENAI_BASE_URL=http://127.0.0.1:8080/v1
    CELERY_CONFIG_MODULE        load another module instead of this one
"""

# live: real providers only. mock: every provider replaced by a deterministic mock (tests, dry runs).
# hybrid: the chain's configured providers, then a mock as the last resort; results say which answered.
stepper_mode = "live"

# Providers by name. "class" is "package.module:Class", imported when a chain first needs it. Optional
# keys: kinds, base_url, api_key_env (the variable holding its key; NAME_FILE is read too), models,
# timeout_s, connect_timeout_s, rpm and tpm (fleet-wide requests and tokens per minute; 0 = no limit),
# options (provider-specific).
stepper_providers = {
    "mock": {"class": "stepper.providers.mock:MockProvider"},
}

# The chain of each kind: "provider:model" entries, tried in order until one answers.
stepper_chains = {
    "report": ["mock:mock-report"],
    "chat": ["mock:mock-chat"],
    "ocr": ["mock:mock-ocr"],
    "steps": ["mock:mock-steps"],
    "vision": ["mock:mock-vision"],
    "speech": ["mock:mock-speech"],
}

# Fleet-wide circuit breaker per provider (state in Redis, shared by every worker): it opens after
# fail_max consecutive transient failures and lets one probe call through after reset_timeout_s.
stepper_breaker = {"fail_max": 5, "reset_timeout_s": 30.0}

# Retries. Inside a task each provider gets attempts_per_provider tries, waiting with full jitter or the
# provider's Retry-After when that wait is at most max_inline_wait_s; then the next provider is tried.
# When every provider failed for transient reasons the task goes back to the broker (durable), at most
# task_max_retries times, after the shortest Retry-After or a backoff capped at task_countdown_cap_s.
stepper_retry = {
    "attempts_per_provider": 2,
    "backoff_base_s": 0.5,
    "backoff_cap_s": 8.0,
    "max_inline_wait_s": 2.0,
    "task_max_retries": 5,
    "task_countdown_cap_s": 300.0,
}

# Time limits. Keep soft < hard < stepper_visibility_timeout_s (checked at start-up): Redis hands a message
# that was not acknowledged within the visibility timeout to another worker, so a longer task would run twice.
# The threads pool ignores these limits; providers enforce their own HTTP timeouts (timeout_s).
task_soft_time_limit = 240
task_time_limit = 300
stepper_visibility_timeout_s = 3600

# How long results stay in Redis for producers to read.
result_expires = 24 * 3600
