"""The deployment's settings for stepper (Celery's conventional config module).

Edit here; stepper's packaged defaults (stepper/defaults.py) fill in anything left out, so a worker
installed without this file still starts. These environment variables override this file:

    STEPPER_REDIS_URL           broker and result backend (default redis://127.0.0.1:6379/0)
    STEPPER_MODE                live | mock | hybrid
    STEPPER_CHAIN_<KIND>        e.g. STEPPER_CHAIN_CHAT=openai:gpt-4o-mini,gemini:gemini-2.0-flash
    STEPPER_<PROVIDER>_BASE_URL e.g. STEPPER_OPENAI_BASE_URL=http://127.0.0.1:8080/v1
    STEPPER_GATEWAY_KEY_HASHES  the HTTP gateway's key digests, comma-separated
    CELERY_CONFIG_MODULE        load another module instead of this one
"""

# live: real providers only. mock: every provider replaced by a deterministic mock (tests, dry runs).
# hybrid: the chain's configured providers, then a mock as the last resort; results say which answered.
stepper_mode = "live"

# Providers by name. "class" is "package.module:Class", imported when a chain first needs it. Keys:
#   kinds             the task kinds it serves
#   base_url          where its API is (also STEPPER_<NAME>_BASE_URL)
#   api_key_env       the variable holding its key (NAME_FILE is read too); unset: the provider is skipped
#   models            the models it serves (a chat request naming another model skips it)
#   timeout_s, connect_timeout_s
#   rpm, tpm          fleet-wide requests and tokens per minute (0 = no limit)
#   budget, budgets   LLM token budget {"input_tokens", "output_tokens"}; budgets per model
#   options           provider-specific (see each provider's module docstring)
# Several OpenAI-compatible servers can sit side by side, each under its own name ("openai", "mistral").
stepper_providers = {
    "mock": {"class": "stepper.providers.mock:MockProvider"},
    "openai": {
        "class": "stepper.providers.openai:OpenAIProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "OPENAI_API_KEY",
        "models": ["gpt-4o-mini", "gpt-4o"],
        "rpm": 500,
        "tpm": 200_000,
        "budget": {"input_tokens": 16000, "output_tokens": 4096},
    },
    # The self-hosted Mistral 7B service (vLLM, Ollama, TGI...): used once STEPPER_MISTRAL_BASE_URL is set.
    "mistral": {
        "class": "stepper.providers.openai:OpenAIProvider",
        "kinds": ["chat", "report"],
        "api_key_env": None,
        "models": ["mistral-7b-instruct"],
        "options": {"requires_base_url": True, "response_format": "json_object"},
        "budget": {"input_tokens": 6000, "output_tokens": 2048},
    },
    "gemini": {
        "class": "stepper.providers.gemini:GeminiProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "GEMINI_API_KEY",
        "models": ["gemini-2.0-flash"],
        "budget": {"input_tokens": 32000, "output_tokens": 4096},
    },
    "cohere": {
        "class": "stepper.providers.cohere:CohereProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "COHERE_API_KEY",
        "models": ["command-r-plus-08-2024"],
    },
    # A Hugging Face Space (https://<owner>-<space>.hf.space) through Gradio's HTTP API: a free last resort.
    "hf_space": {
        "class": "stepper.providers.hf_space:HfSpaceProvider",
        "kinds": ["chat", "report"],
        "api_key_env": "HF_TOKEN",
        "models": ["space"],
        "timeout_s": 120,  # a sleeping Space takes a while to wake
    },
    "tesseract": {"class": "stepper.providers.tesseract:TesseractProvider", "kinds": ["ocr"]},
    "opencv": {"class": "stepper.providers.opencv:OpenCvProvider", "kinds": ["steps", "vision"]},
    "elevenlabs": {
        "class": "stepper.providers.elevenlabs:ElevenLabsProvider",
        "kinds": ["speech"],
        "api_key_env": "ELEVENLABS_API_KEY",
        "models": ["eleven_multilingual_v2"],
        # "options": {"default_voice_id": "<a voice id from `stepper voices`>"},
    },
    "espeak": {"class": "stepper.providers.espeak:EspeakProvider", "kinds": ["speech"]},
}

# The chain of each kind: "provider:model" entries, tried in order until one answers.
stepper_chains = {
    "report": [
        "openai:gpt-4o-mini",
        "mistral:mistral-7b-instruct",
        "gemini:gemini-2.0-flash",
        "cohere:command-r-plus-08-2024",
    ],
    "chat": [
        "openai:gpt-4o-mini",
        "mistral:mistral-7b-instruct",
        "gemini:gemini-2.0-flash",
        "cohere:command-r-plus-08-2024",
        "hf_space:space",
    ],
    "ocr": ["tesseract:tesseract"],
    "steps": ["opencv:opencv"],
    "vision": ["opencv:opencv"],
    "speech": ["elevenlabs:eleven_multilingual_v2", "espeak:espeak-ng"],
}

# Image input. Paths are read only under these roots (symlinks resolved); URLs only when they resolve to public
# addresses, unless a network is allowed here; bytes and pixels are checked before anything is decoded.
stepper_images = {
    "max_bytes": 20 * 1024 * 1024,
    "max_pixels": 40_000_000,
    "roots": [],
    "allowed_networks": [],
    "fetch_timeout_s": 10.0,
    "max_redirects": 3,
}

# Audio and thumbnails: files in this directory, inline data: URIs below inline_max_bytes, deleted after ttl_s.
# In production point it at storage the producers can read (a shared volume), not /tmp.
stepper_artifacts = {
    "directory": "/tmp/stepper-artifacts",  # noqa: S108  (a development default, see above)
    "inline_max_bytes": 16 * 1024,
    "ttl_s": 7 * 24 * 3600,
}

# Result cache. Per kind: fresh for fresh_s, then served stale for up to stale_s more while one refresh runs
# (a kind left out is not cached). Chat is cached only at temperature 0 unless a request asks (cache="use").
# "url" gives the cache its own Redis (recommended: allkeys-lru there; the broker's Redis must be noeviction).
# Kinds whose results point at artifacts (speech, steps) must stay within stepper_artifacts["ttl_s"].
stepper_cache = {
    "url": None,
    "windows": {
        "report": {"fresh_s": 7 * 86400, "stale_s": 30 * 86400},
        "chat": {"fresh_s": 3600, "stale_s": 86400},
        "ocr": {"fresh_s": 7 * 86400, "stale_s": 30 * 86400},
        "vision": {"fresh_s": 7 * 86400, "stale_s": 30 * 86400},
        "steps": {"fresh_s": 86400, "stale_s": 5 * 86400},
        "speech": {"fresh_s": 86400, "stale_s": 5 * 86400},
    },
    "single_flight_wait_s": 300,
    "idempotency_window_s": 86400,
}

# Signed webhooks to a request's callback_url (see README, Webhooks). The secret is read from the variable
# named here (or <NAME>_FILE). Callbacks go only to public addresses unless a network is allowed, and only to
# these hosts when the list is not empty.
stepper_webhooks = {
    "secret_env": "STEPPER_WEBHOOK_SECRET",
    "retry_for_s": 3600,
    "backoff_base_s": 2.0,
    "backoff_cap_s": 300.0,
    "timeout_s": 10,
    "allowed_hosts": [],
    "allowed_networks": [],
}

# Tasks that failed for good (see `stepper dlq`): how many are kept, and for how long.
stepper_dead_letters = {"max_entries": 100_000, "ttl_s": 30 * 86400}

# Surviving a Redis restart or a SIGKILLed worker. kombu leaves a message whose worker is gone in its unacked
# hash until the visibility timeout (an hour); stepper's workers lease the messages they hold, and a message
# no live worker has held for lease_s goes back on its queue. redis_wait_s: how long a task's own Redis
# bookkeeping (cache, idempotency) waits for Redis to come back before the task is requeued, not failed.
stepper_recovery = {"lease_s": 20, "redis_wait_s": 30}

# Operational alerts (`stepper alerts watch`; see README, Operations). The webhook URLs are secrets, read from
# the variables named here (or <NAME>_FILE); a sink whose variable is unset is off. The defaults:
# stepper_alerts = {
#     "slack_webhook_url_env": "STEPPER_SLACK_WEBHOOK_URL",
#     "discord_webhook_url_env": "STEPPER_DISCORD_WEBHOOK_URL",
#     "interval_s": 30,
#     "timeout_s": 10,
#     "queue_depth_threshold": 1000,          # messages waiting in one queue, all priorities
#     "dlq_growth_threshold": 10,             # new dead letters between two checks
#     "exhausted_per_minute_threshold": 5,    # ChainExhausted failures in the previous minute
# }

# The HTTP gateway (`stepper gateway`; see README, HTTP gateway). Keys are configured as SHA-256 hex digests, never
# as keys: `stepper gateway new-key` prints a fresh key (give it to the caller) and its digest (put it here or in
# STEPPER_GATEWAY_KEY_HASHES, comma-separated, which overrides this list). rpm and tpm are per key and fleet-wide
# (several gateway replicas share them in Redis); tokens are estimated from the request (0 = no limit).
stepper_gateway = {
    "key_hashes": [],
    "rpm": 600,
    "tpm": 200_000,
    "max_body_bytes": 32 * 1024 * 1024,  # larger bodies get 413 (inline base64 images are the big ones)
    "cors_origins": [],  # browser origins allowed to call the gateway, e.g. ["https://app.example.com"]
    "chat_timeout_s": 120,  # a non-streaming chat completion answers 504 after waiting this long
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
