"""The deployment's settings for stepper (Celery's conventional config module).

Only what a deployment usually changes is here. Every other setting keeps the default written, with its
reason, in stepper/settings.py (stepper_* settings, the provider catalogue included) and stepper/config.py
(Celery's reliability settings); set any of them here by the same name to change it. A dict setting given
here is merged with its default key by key: a deployment adding one provider keeps the others.

These environment variables override this file:

    STEPPER_REDIS_URL           broker, result backend and the fleet's state (default redis://127.0.0.1:6379/0)
    STEPPER_BROKER_URL          the broker alone: redis://, sentinel://...?master_name=NAME, amqp:// (RabbitMQ)
    STEPPER_RESULT_BACKEND      the result backend alone (a Redis, or a Sentinel URL)
    STEPPER_STATE_REDIS_URL     the fleet's state alone: breakers, rate limits, cache, idempotency, streams,
                                dead letters, leases (a Redis, or a Sentinel URL)
    STEPPER_RABBITMQ_QUEUE_TYPE classic (priorities) | quorum (replicated); see stepper_rabbitmq below
    STEPPER_MODE                live | mock | hybrid
    STEPPER_CHAIN_<KIND>        e.g. STEPPER_CHAIN_CHAT=openai:gpt-4o-mini,gemini:gemini-2.0-flash
    STEPPER_<PROVIDER>_BASE_URL e.g. STEPPER_OPENAI_BASE_URL=http://127.0.0.1:8080/v1
    STEPPER_GATEWAY_KEY_HASHES  the HTTP gateway's key digests, comma-separated
    CELERY_CONFIG_MODULE        load another module instead of this one
"""

# live: real providers only. mock: every provider replaced by a deterministic mock (tests, dry runs).
# hybrid: the chain's configured providers, then a mock as the last resort; results say which answered.
stepper_mode = "live"

# The chain of each kind: "provider:model" entries, tried in order until one answers. A provider whose key
# is not set (OPENAI_API_KEY...) or whose base URL is not configured is skipped, and the attempt says why.
# A kind left out keeps its default chain (DEFAULT_CHAINS in stepper/settings.py: OpenAI, then the
# self-hosted Mistral, Gemini, Cohere and a Hugging Face Space for chat and report; tesseract for OCR;
# OpenCV for steps and vision; ElevenLabs then espeak-ng for speech). For example:
# stepper_chains = {"chat": ["local:llama-3.1-8b-instruct", "openai:gpt-4o-mini"]}

# Providers by name, added to (or replacing by name) the catalogue in stepper/settings.py. Keys:
#   class             "package.module:Class", imported when a chain first needs it
#   kinds             the task kinds it serves
#   base_url          where its API is (also STEPPER_<NAME>_BASE_URL)
#   api_key_env       the variable holding its key (NAME_FILE is read too); unset: the provider is skipped
#   models            the models it serves (a chat request naming another model skips it)
#   timeout_s, connect_timeout_s
#   rpm, tpm          fleet-wide requests and tokens per minute (0 = no limit)
#   budget, budgets   LLM token budget {"input_tokens", "output_tokens"} and spend caps {"per_day", "per_month"}
#                     (UTC windows, in the prices' currency); budgets: the same per model
#   prices            {model: {"input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "currency"}}
#   deployments       several deployments of the same models, each {"base_url", "api_key_env", "weight",
#                     "label", "rpm", "tpm"} with its own breaker, cooldown and limits
#   strategy          how calls pick a deployment: "weighted" (default), "least-busy", "latency"
#   options           provider-specific (see each provider's module docstring)
# For example, a second OpenAI-compatible server beside the others:
# stepper_providers = {
#     "local": {
#         "class": "stepper.providers.openai:OpenAIProvider",
#         "kinds": ["chat"],
#         "base_url": "http://10.0.0.5:8000/v1",
#         "api_key_env": None,
#         "models": ["llama-3.1-8b-instruct"],
#     },
# }

# Audio and thumbnails: files in this directory, inline data: URIs below inline_max_bytes, deleted after ttl_s.
# In production point it at storage the producers can read (a shared volume), not /tmp.
stepper_artifacts = {"directory": "/tmp/stepper-artifacts"}  # noqa: S108  (a development default, see above)

# Image input read from paths: only under these roots (symlinks resolved). URLs are fetched only when they
# resolve to public addresses, unless a network is allowed ("allowed_networks": ["10.0.0.0/8"]).
stepper_images = {"roots": []}

# PDFs and TIFFs given to OCR: pages per document (or selected from one), and the render DPI's default and
# bounds; a page over stepper_images max_pixels is rendered lower, down to min_dpi, then refused.
# stepper_documents = {"max_pages": 50, "max_request_pages": 200, "default_dpi": 300, "max_dpi": 600, "min_dpi": 100}

# How OCR prepares a page: straighten a lean (deskew), enlarge glyphs under 10 px towards 30 px, adaptive
# binarisation (off: it lowered accuracy on low-resolution scans). Measured defaults: see OcrSettings.
# stepper_ocr = {"deskew": True, "enlarge_glyphs_below_px": 10, "adaptive_binarisation": False}

# The HTTP gateway's keys, as SHA-256 digests (`stepper gateway new-key` prints a key and its digest; give
# the key to the caller, put the digest here or in STEPPER_GATEWAY_KEY_HASHES).
stepper_gateway = {"key_hashes": []}
# Spend caps per key, by day and month (429 insufficient_quota once spent): "budget" for every key, "budgets"
# for particular keys by identity (the digest's first 8 hex characters), e.g.
# stepper_gateway = {"key_hashes": [...], "budget": {"per_day": 2.0}, "budgets": {"ab12cd34": {"per_month": 100.0}}}
# Prices over those the providers declare (stepper/settings.py ships the default chains' models, in USD):
# stepper_prices = {"openai": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}}}

# Time limits. Keep soft < hard < stepper_visibility_timeout_s (checked at start-up): Redis hands a message
# that was not acknowledged within the visibility timeout to another worker, so a longer task would run twice.
# The threads pool ignores these limits; providers enforce their own HTTP timeouts (timeout_s).
task_soft_time_limit = 240
task_time_limit = 300

# Other settings often changed, with their defaults (see stepper/settings.py for every field):
# stepper_state_url = None                          # the fleet's state on its own Redis (default: the broker's)
# stepper_rabbitmq = {"queue_type": "classic", "delivery_limit": 10}  # RabbitMQ's queues (README: which broker when)
# stepper_key_namespace = "stepper"                 # prefix of every Redis key stepper writes
# stepper_cache = {"url": None}                     # the result cache on its own Redis (allkeys-lru there)
# stepper_webhooks = {"secret_env": "STEPPER_WEBHOOK_SECRET", "allowed_hosts": []}
# stepper_alerts = {"slack_webhook_url_env": "STEPPER_SLACK_WEBHOOK_URL", "queue_depth_threshold": 1000}
# stepper_breaker = {"fail_max": 5, "reset_timeout_s": 30.0}
# stepper_retry = {"attempts_per_provider": 2, "task_max_retries": 5, "task_countdown_cap_s": 300.0}
# stepper_recovery = {"lease_s": 20, "redis_wait_s": 30}
# stepper_dead_letters = {"max_entries": 100_000, "ttl_s": 30 * 86400}
# stepper_visibility_timeout_s = 3600
# result_expires = 24 * 3600                        # how long results stay in Redis for producers to read
