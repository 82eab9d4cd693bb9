"""The settings stepper runs with when the deployment says nothing.

``celeryconfig.py`` (or the module named by ``CELERY_CONFIG_MODULE``) overrides any of these, and a few
environment variables override both (see :mod:`stepper.config`). The reliability settings here are not
meant to be edited; each says why it is set.
"""

from __future__ import annotations

from typing import Any

REDIS_URL = "redis://127.0.0.1:6379/0"

#: Ten real priority levels on Redis, 0 the most urgent. kombu emulates priorities with one list per
#: level and has only four (0, 3, 6, 9) unless told otherwise. Producers that want ten levels must
#: use the same transport options (stepper's own producer API does).
PRIORITY_STEPS = list(range(10))

DEFAULTS: dict[str, Any] = {
    # --- Celery: where and how ------------------------------------------------------------------
    "broker_url": REDIS_URL,
    "result_backend": REDIS_URL,
    # JSON only: a pickled message would let anyone who can write to Redis run code on the workers.
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    # A task is acknowledged only after it finished, and a pool process killed mid-task (OOM killer,
    # SIGKILL) gets its message requeued instead of acked: no task is lost to a crashed worker.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # Each pool process reserves one message at a time, so one slow task never holds others hostage
    # and a high-priority message is not stuck behind a prefetched backlog.
    "worker_prefetch_multiplier": 1,
    # A worker that starts before Redis keeps trying instead of exiting.
    "broker_connection_retry_on_startup": True,
    # A task running when the broker connection drops keeps running: it waits out the outage, stores its
    # result and the message is acknowledged, or restored by stepper's recovery sweep (which never takes a
    # message a live worker still holds) and answered from that stored result. Cancelling it (prefork can)
    # threw away work that had often already reached the provider, and the redelivery called it again.
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    # A Redis blip while storing a result retries instead of losing the result.
    "result_backend_always_retry": True,
    "result_backend_max_retries": 10,
    # Results are read by producers within minutes; a day is generous and keeps Redis from filling
    # up with the results of fire-and-forget tasks.
    "result_expires": 24 * 3600,
    # soft limit < hard limit < visibility timeout (checked at start-up): a task is stopped before
    # Redis would consider its message lost and hand it to a second worker.
    "task_soft_time_limit": 240,
    "task_time_limit": 300,
    # Task events cost about a fifth of the throughput; Flower switches them on while it runs.
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    # The middle of the ten levels; see stepper.priorities for the named levels.
    "task_default_priority": 5,
    "broker_transport_options": {
        "priority_steps": PRIORITY_STEPS,
        # Poll queues in a fixed order rather than round robin; kombu polls priority-major, so
        # priority 0 of every queue comes before priority 1 of any.
        "queue_order_strategy": "priority",
    },
    "result_backend_transport_options": {},
    # --- stepper ----------------------------------------------------------------------------------
    # live: real providers only; mock: every provider replaced by a deterministic mock;
    # hybrid: the chain's configured providers, then a mock as the last resort (always labelled).
    "stepper_mode": "live",
    # How long Redis waits for an unacknowledged message before handing it to another worker. Written
    # to both broker_transport_options and result_backend_transport_options. It must exceed the hard
    # time limit and the longest retry countdown, or the same task runs twice.
    "stepper_visibility_timeout_s": 3600,
    # Redis for fleet-wide state (breakers, rate limits); None uses the broker's.
    "stepper_state_url": None,
    # Providers by name. "class" is a dotted path ("package.module:Class"), imported when first used.
    # A provider whose key variable is unset (or whose binary is missing) is skipped and recorded.
    "stepper_providers": {
        "mock": {"class": "stepper.providers.mock:MockProvider"},
        "openai": {
            "class": "stepper.providers.openai:OpenAIProvider",
            "kinds": ["chat", "report"],
            "api_key_env": "OPENAI_API_KEY",
            "models": ["gpt-4o-mini", "gpt-4o"],
            "budget": {"input_tokens": 16000, "output_tokens": 4096},
        },
        # The self-hosted Mistral 7B service: any OpenAI-compatible server (vLLM, Ollama, TGI). It is used
        # once STEPPER_MISTRAL_BASE_URL (or base_url here) points at its /v1.
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
        # A Hugging Face Space through Gradio's HTTP API: a free last resort, once base_url names the Space
        # (https://<owner>-<space>.hf.space). HF_TOKEN is sent when set; public Spaces need none.
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
        },
        "espeak": {"class": "stepper.providers.espeak:EspeakProvider", "kinds": ["speech"]},
    },
    # The chain of each kind: "provider:model" entries, tried in order.
    "stepper_chains": {
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
    },
    # Result cache per kind: fresh for fresh_s, then served stale for stale_s while one refresh runs. Kinds
    # whose results point at artifacts (speech, steps) stay within the artifacts' TTL.
    "stepper_cache": {
        "windows": {
            "report": {"fresh_s": 7 * 86400, "stale_s": 30 * 86400},
            "chat": {"fresh_s": 3600, "stale_s": 86400},
            "ocr": {"fresh_s": 7 * 86400, "stale_s": 30 * 86400},
            "vision": {"fresh_s": 7 * 86400, "stale_s": 30 * 86400},
            "steps": {"fresh_s": 86400, "stale_s": 5 * 86400},
            "speech": {"fresh_s": 86400, "stale_s": 5 * 86400},
        },
    },
    # The HTTP gateway (`stepper gateway`): accepted keys as SHA-256 hex digests (STEPPER_GATEWAY_KEY_HASHES
    # overrides them), per-key requests and estimated tokens per minute (0 = no limit), the largest request
    # body, CORS origins, and how long a non-streaming chat completion waits for its result.
    "stepper_gateway": {
        "key_hashes": [],
        "rpm": 600,
        "tpm": 200_000,
        "max_body_bytes": 32 * 1024 * 1024,
        "cors_origins": [],
        "chat_timeout_s": 120.0,
    },
    # Fleet-wide circuit breaker per provider: opens after fail_max consecutive transient failures,
    # lets one probe call through (fleet-wide) after reset_timeout_s.
    "stepper_breaker": {"fail_max": 5, "reset_timeout_s": 30.0},
    # Retries: inside one task, each provider gets attempts_per_provider tries, waiting with full
    # jitter (or the provider's Retry-After) when that wait is at most max_inline_wait_s. When every
    # provider failed transiently the task goes back to the broker, up to task_max_retries times.
    "stepper_retry": {
        "attempts_per_provider": 2,
        "backoff_base_s": 0.5,
        "backoff_cap_s": 8.0,
        "max_inline_wait_s": 2.0,
        "task_max_retries": 5,
        "task_countdown_cap_s": 300.0,
    },
}
