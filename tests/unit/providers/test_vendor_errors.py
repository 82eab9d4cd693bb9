"""Real servers' error answers, read by meaning: each body is the server's own (its source, its documentation, or
a user's report of what it answered), and each case names where it came from."""

from __future__ import annotations

from typing import Any

import pytest

from stepper.providers.vendor_errors import MESSAGE_CHARS, Meaning, VendorError, read_vendor_error


def case(
    case_id: str,
    status: int,
    body: object,
    meaning: Meaning,
    *,
    code: str | None = None,
    param: str | None = None,
    limit: int | None = None,
    requested: int | None = None,
    message: str,
) -> Any:
    expected = VendorError(status, meaning, message, code, param, limit, requested)
    return pytest.param(status, body, expected, id=case_id)


VLLM_OLD_CONTEXT = (
    "This model's maximum context length is 4096 tokens. However, you requested 4396 tokens (4196 in the messages, "
    "200 in the completion). Please reduce the length of the messages or completion."
)
TGI_INPUT_LENGTH = "Input validation error: `inputs` must have less than 4096 tokens. Given: 5000"
COHERE_TOO_MANY = (
    "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292. Try using a shorter "
    "prompt, or enabling prompt truncating. See https://docs.cohere.com/reference/generate for more details."
)
AZURE_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify "
    "your prompt and retry. To learn more about our content filtering policies please read our documentation: "
    "https://go.microsoft.com/fwlink/?linkid=2198766"
)
EXTRA_FORBIDDEN = {
    "type": "extra_forbidden",
    "loc": ["body", "stream_options", "include_usage"],
    "msg": "Extra inputs are not permitted",
    "input": True,
}

CASES = [
    # ---- vLLM ----------------------------------------------------------------------------------------------
    # vllm-project/vllm vllm/entrypoints/openai/serving_engine.py (v0.5, _validate_prompt_and_tokenize) in
    # protocol.py's ErrorResponse(object="error", message, type, param, code) from create_error_response.
    case(
        "vllm-context-old-shape",
        400,
        {"object": "error", "message": VLLM_OLD_CONTEXT, "type": "BadRequestError", "param": None, "code": 400},
        "context_overflow",
        code="BadRequestError",
        limit=4096,
        requested=4396,
        message=VLLM_OLD_CONTEXT,
    ),
    # Same file, the branch for a request without max_tokens (the comma before "Please" is vLLM's).
    case(
        "vllm-context-old-shape-no-max-tokens",
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens in the "
            "messages, Please reduce the length of the messages.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        "context_overflow",
        code="BadRequestError",
        limit=4096,
        requested=5000,
        message="This model's maximum context length is 4096 tokens. However, you requested 5000 tokens in the "
        "messages, Please reduce the length of the messages.",
    ),
    # vllm/entrypoints/openai/engine/protocol.py ErrorResponse{error: ErrorInfo{message, type, param, code}}; the
    # "(parameter=..., value=...)" tail is vllm/exceptions.py VLLMValidationError.__str__ (reported verbatim in
    # user logs: "This model's maximum context length is 65536 tokens. However, your request has 99103 input tokens").
    case(
        "vllm-context-new-shape",
        400,
        {
            "error": {
                "message": "This model's maximum context length is 65536 tokens. However, your request has 99103 input "
                "tokens. Please reduce the length of the input messages. (parameter=input_tokens, value=99103)",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        "context_overflow",
        code="BadRequestError",
        limit=65536,
        requested=99103,
        message="This model's maximum context length is 65536 tokens. However, your request has 99103 input tokens. "
        "Please reduce the length of the input messages. (parameter=input_tokens, value=99103)",
    ),
    # vLLM >= 0.10 when max_tokens does not fit beside the prompt; body as reported in
    # andrewcho-dev/opsconductor-ng vLLM_transition/TOKEN_LIMIT_FIX.md (the trailing "None" is vLLM's).
    case(
        "vllm-max-tokens-too-large",
        400,
        {
            "error": {
                "message": "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context "
                "length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778). None",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        "context_overflow",
        code="BadRequestError",
        limit=4096,
        requested=10778,
        message="'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is "
        "4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778). None",
    ),
    # serving_engine.py _check_model: a model name the server does not serve.
    case(
        "vllm-model-not-found",
        404,
        {
            "object": "error",
            "message": "The model `gpt-4` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        },
        "not_found",
        code="NotFoundError",
        message="The model `gpt-4` does not exist.",
    ),
    # Negative: mentions tokens, is no overflow. vllm/sampling_params.py _verify_args.
    case(
        "vllm-max-tokens-at-least-one",
        400,
        {
            "error": {
                "message": "max_tokens must be at least 1, got 0.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        "bad_request",
        code="BadRequestError",
        message="max_tokens must be at least 1, got 0.",
    ),
    # Negative: a bad value, not an unsupported parameter. vllm/sampling_params.py _verify_args.
    case(
        "vllm-temperature-negative",
        400,
        {
            "error": {
                "message": "temperature must be non-negative, got -1.0.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        "bad_request",
        code="BadRequestError",
        message="temperature must be non-negative, got -1.0.",
    ),
    # ---- Hugging Face TGI ----------------------------------------------------------------------------------
    # huggingface/text-generation-inference router/src/validation.rs ValidationError::MaxTotalTokens, wrapped by
    # router/src/infer/mod.rs InferError::ValidationError ("Input validation error: {0}", error_type "validation",
    # 422 in server.rs) into lib.rs ErrorResponse{error, error_type}.
    case(
        "tgi-context-inputs-plus-max-new-tokens",
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 "
            "`inputs` tokens and 200 `max_new_tokens`",
            "error_type": "validation",
        },
        "context_overflow",
        code="validation",
        limit=4096,
        requested=4200,
        message="Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` "
        "tokens and 200 `max_new_tokens`",
    ),
    # validation.rs ValidationError::InputLength.
    case(
        "tgi-context-input-length",
        422,
        {"error": TGI_INPUT_LENGTH, "error_type": "validation"},
        "context_overflow",
        code="validation",
        limit=4096,
        requested=5000,
        message=TGI_INPUT_LENGTH,
    ),
    # infer/mod.rs InferError::into_openai_event: /v1/chat/completions streams errors as a 200 event
    # {"error": {"message", "http_status_code": 422}} (server.rs chat_completions, then "[DONE]").
    case(
        "tgi-context-inside-stream",
        200,
        {"error": {"message": TGI_INPUT_LENGTH, "http_status_code": 422}},
        "context_overflow",
        limit=4096,
        requested=5000,
        message=TGI_INPUT_LENGTH,
    ),
    # Negative: the cap on the output alone (validation.rs ValidationError::MaxNewTokens), not the prompt.
    case(
        "tgi-max-new-tokens-cap",
        422,
        {"error": "Input validation error: `max_new_tokens` must be <= 1024. Given: 2048", "error_type": "validation"},
        "bad_request",
        code="validation",
        message="Input validation error: `max_new_tokens` must be <= 1024. Given: 2048",
    ),
    # validation.rs ValidationError::Grammar.
    case(
        "tgi-grammar-not-supported",
        422,
        {"error": "Input validation error: grammar is not supported", "error_type": "validation"},
        "unsupported_parameter",
        code="validation",
        param="grammar",
        message="Input validation error: grammar is not supported",
    ),
    # InferError::Overloaded: 429 with error_type "overloaded" (the concurrency limit, not a rate limit).
    case(
        "tgi-overloaded",
        429,
        {"error": "Model is overloaded", "error_type": "overloaded"},
        "overloaded",
        code="overloaded",
        message="Model is overloaded",
    ),
    # ---- llama.cpp server ----------------------------------------------------------------------------------
    # ggml-org/llama.cpp tools/server/server-context.cpp send_error(... "request (%d tokens) exceeds the available
    # context size (%d tokens), try increasing it", ERROR_TYPE_EXCEED_CONTEXT_SIZE); server-common.cpp
    # format_error_response (code 400, type exceed_context_size_error); server-task.cpp adds n_prompt_tokens, n_ctx.
    case(
        "llamacpp-context",
        400,
        {
            "error": {
                "code": 400,
                "message": "request (9739 tokens) exceeds the available context size (8192 tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 9739,
                "n_ctx": 8192,
            }
        },
        "context_overflow",
        code="exceed_context_size_error",
        limit=8192,
        requested=9739,
        message="request (9739 tokens) exceeds the available context size (8192 tokens), try increasing it",
    ),
    # The earlier wording without numbers: the counts come from n_ctx and n_prompt_tokens.
    case(
        "llamacpp-context-older-wording",
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        },
        "context_overflow",
        code="exceed_context_size_error",
        limit=4096,
        requested=5000,
        message="the request exceeds the available context size, try increasing it",
    ),
    # tools/server/utils.hpp oaicompat params parse: throw std::runtime_error("Unsupported param: " + param),
    # answered as ERROR_TYPE_INVALID_REQUEST.
    case(
        "llamacpp-unsupported-param",
        400,
        {"error": {"code": 400, "message": "Unsupported param: best_of", "type": "invalid_request_error"}},
        "unsupported_parameter",
        code="invalid_request_error",
        param="best_of",
        message="Unsupported param: best_of",
    ),
    # tools/server/server.cpp handle_embeddings_impl: ERROR_TYPE_NOT_SUPPORTED (501), naming no request field.
    case(
        "llamacpp-not-supported",
        501,
        {
            "error": {
                "code": 501,
                "message": "This server does not support embeddings. Start it with `--embeddings`",
                "type": "not_supported_error",
            }
        },
        "unsupported_parameter",
        code="not_supported_error",
        message="This server does not support embeddings. Start it with `--embeddings`",
    ),
    # tools/server/server.cpp middleware_server_state: format_error_response("Loading model", ERROR_TYPE_UNAVAILABLE).
    case(
        "llamacpp-loading-model",
        503,
        {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
        "overloaded",
        code="unavailable_error",
        message="Loading model",
    ),
    # ---- Ollama (/v1, openai/openai.go NewError: {"error": {message, type, param, code}}) --------------------
    # ollama/ollama llm/llama_server.go: a prompt longer than num_ctx when context shift is off (400).
    case(
        "ollama-context",
        400,
        {
            "error": {
                "message": "the prompt is longer than the context length currently available to the model; shorten "
                "the prompt, adjust the context length in settings, or use a model with a longer context length",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
        "context_overflow",
        code="invalid_request_error",
        message="the prompt is longer than the context length currently available to the model; shorten the prompt, "
        "adjust the context length in settings, or use a model with a longer context length",
    ),
    # server/routes.go "model '%s' not found" (404) through openai.go NewError (type not_found_error).
    case(
        "ollama-model-not-found",
        404,
        {"error": {"message": "model 'llama9' not found", "type": "not_found_error", "param": None, "code": None}},
        "not_found",
        code="not_found_error",
        message="model 'llama9' not found",
    ),
    # ---- OpenAI and Azure OpenAI ---------------------------------------------------------------------------
    # hyperifyio/goagent#75 (api.openai.com, gpt-5 family).
    case(
        "openai-context-configured-limit",
        400,
        {
            "error": {
                "message": "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted in "
                "533603 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        "context_overflow",
        code="context_length_exceeded",
        limit=272000,
        requested=533603,
        message="Input tokens exceed the configured limit of 272000 tokens. Your messages resulted in 533603 tokens. "
        "Please reduce the length of the messages.",
    ),
    # smol-ai/developer#7 (the message); the code and param as OpenAI sends them with it.
    case(
        "openai-context-length-exceeded",
        400,
        {
            "error": {
                "message": "This model's maximum context length is 4097 tokens. However, your messages resulted in "
                "7575 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        "context_overflow",
        code="context_length_exceeded",
        limit=4097,
        requested=7575,
        message="This model's maximum context length is 4097 tokens. However, your messages resulted in 7575 tokens. "
        "Please reduce the length of the messages.",
    ),
    # griptape-ai/ComfyUI-Griptape#312 (gpt-5).
    case(
        "openai-unsupported-parameter",
        400,
        {
            "error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                "'max_completion_tokens' instead.",
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "unsupported_parameter",
            }
        },
        "unsupported_parameter",
        code="unsupported_parameter",
        param="max_tokens",
        message="Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
        "instead.",
    ),
    # holoviz/lumen#1087 (o-series on Azure OpenAI).
    case(
        "openai-unsupported-value-temperature",
        400,
        {
            "error": {
                "message": "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default "
                "(1) value is supported.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "unsupported_value",
            }
        },
        "unsupported_parameter",
        code="unsupported_value",
        param="temperature",
        message="Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value "
        "is supported.",
    ),
    # agno-agi/agno#1066 (Azure OpenAI).
    case(
        "azure-unknown-parameter-stream-options",
        400,
        {
            "error": {
                "message": "Unknown parameter: 'stream_options'.",
                "type": "invalid_request_error",
                "param": "stream_options",
                "code": "unknown_parameter",
            }
        },
        "unsupported_parameter",
        code="unknown_parameter",
        param="stream_options",
        message="Unknown parameter: 'stream_options'.",
    ),
    # Pythagora-io/gpt-pilot#1022 (older Azure API versions): param is "", the field is only in the words.
    case(
        "azure-unrecognized-argument",
        400,
        {
            "error": {
                "message": "Unrecognized request argument supplied: stream_options. Please contact us through an "
                "Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 for further questions.",
                "type": "invalid_request_error",
                "param": "",
                "code": None,
            }
        },
        "unsupported_parameter",
        code="invalid_request_error",
        param="stream_options",
        message="Unrecognized request argument supplied: stream_options. Please contact us through an Azure support "
        "request at: https://go.microsoft.com/fwlink/?linkid=2213926 for further questions.",
    ),
    # Negative: a value out of range, not an unsupported parameter (Frrrrrrrrank/auto_job__find__chatgpt__rpa#40).
    case(
        "openai-temperature-out-of-range",
        400,
        {
            "error": {
                "message": "3.0 is greater than the maximum of 2 - 'temperature'",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
        "bad_request",
        code="invalid_request_error",
        message="3.0 is greater than the maximum of 2 - 'temperature'",
    ),
    # BerriAI/litellm litellm/exceptions.py ContentPolicyViolationError quotes OpenAI's body.
    case(
        "openai-content-policy-violation",
        400,
        {
            "error": {
                "code": "content_policy_violation",
                "message": "Your request was rejected as a result of our safety system. Image descriptions generated "
                "from your prompt may contain text that is not allowed by our safety system. If you believe this was "
                "done in error, your request may succeed if retried, or by adjusting your prompt.",
                "param": None,
                "type": "invalid_request_error",
            }
        },
        "content_policy",
        code="content_policy_violation",
        message="Your request was rejected as a result of our safety system. Image descriptions generated from your "
        "prompt may contain text that is not allowed by our safety system. If you believe this was done in error, "
        "your request may succeed if retried, or by adjusting your prompt.",
    ),
    # alan-turing-institute/t0-1#69 (a reasoning model refusing the prompt).
    case(
        "openai-invalid-prompt-usage-policy",
        400,
        {
            "error": {
                "message": "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please "
                "try again with a different prompt: https://platform.openai.com/docs/guides/reasoning#advice-on-prompting",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_prompt",
            }
        },
        "content_policy",
        code="invalid_prompt",
        message="Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again "
        "with a different prompt: https://platform.openai.com/docs/guides/reasoning#advice-on-prompting",
    ),
    # Azure OpenAI content filtering doc (learn.microsoft.com .../content-filter): code content_filter, status 400.
    case(
        "azure-content-filter",
        400,
        {
            "error": {
                "message": AZURE_FILTERED,
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation"},
            }
        },
        "content_policy",
        code="content_filter",
        message=AZURE_FILTERED,
    ),
    # chatanywhere/GPT_API_free#62.
    case(
        "openai-invalid-api-key",
        401,
        {
            "error": {
                "message": "Incorrect API key provided: sk-VKMIs***************************************wjh3. You can "
                "find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
        "auth",
        code="invalid_api_key",
        message="Incorrect API key provided: sk-VKMIs***************************************wjh3. You can find your "
        "API key at https://platform.openai.com/account/api-keys.",
    ),
    # DrShushen/climb#13: one request larger than the per-minute token budget is still a rate limit.
    case(
        "openai-rate-limit-request-too-large",
        429,
        {
            "error": {
                "message": "Request too large for gpt-4o in organization org-VDAWofJASuLH0vVz8o9tiQZr on tokens per "
                "min (TPM): Limit 30000, Requested 30601. The input or output tokens must be reduced in order to run "
                "successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        "rate_limited",
        code="rate_limit_exceeded",
        message="Request too large for gpt-4o in organization org-VDAWofJASuLH0vVz8o9tiQZr on tokens per min (TPM): "
        "Limit 30000, Requested 30601. The input or output tokens must be reduced in order to run successfully. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
    ),
    # dev-hato/hato-bot#4552: 429 that no wait will fix.
    case(
        "openai-insufficient-quota",
        429,
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
        "quota_exhausted",
        code="insufficient_quota",
        message="You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
    ),
    # waylaidwanderer/node-chatgpt-api#34.
    case(
        "openai-overloaded",
        503,
        {
            "error": {
                "message": "That model is currently overloaded with other requests. You can retry your request, or "
                "contact us through our help center at help.openai.com if the error persists.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
        "overloaded",
        code="server_error",
        message="That model is currently overloaded with other requests. You can retry your request, or contact us "
        "through our help center at help.openai.com if the error persists.",
    ),
    # ---- LiteLLM proxy (litellm/proxy ProxyException.to_dict: type and param often null, code the status) -----
    # BerriAI/litellm#7259: the exception chain names ContextWindowExceededError; lines joined, cut at 300.
    case(
        "litellm-context-window-exceeded",
        400,
        {
            "error": {
                "message": 'litellm.BadRequestError: litellm.ContextWindowExceededError: AnthropicError - {"type":'
                '"error","error":{"type":"invalid_request_error","message":"prompt is too long: 200480 tokens > '
                '200000 maximum"}}\nReceived Model Group=anthropic/claude-3-5-sonnet-20241022\nAvailable Model Group '
                "Fallbacks=None",
                "type": None,
                "param": None,
                "code": "400",
            }
        },
        "context_overflow",
        code="ContextWindowExceededError",
        limit=200000,
        requested=200480,
        message='litellm.BadRequestError: litellm.ContextWindowExceededError: AnthropicError - {"type":"error",'
        '"error":{"type":"invalid_request_error","message":"prompt is too long: 200480 tokens > 200000 maximum"}} '
        "Received Model Group=anthropic/claude-3-5-sonnet-20241022 Available Model Group Fallbacks=None",
    ),
    # BrokkAi/brokk-app#540: LiteLLM left it a plain BadRequestError; the words still say overflow.
    case(
        "litellm-anthropic-context-limit-as-bad-request",
        400,
        {
            "error": {
                "message": 'litellm.BadRequestError: AnthropicException - b\'{"type":"error","error":{"type":'
                '"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 179413 + '
                "32768 > 200000, decrease input length or `max_tokens` and try again\"}}'. Received Model "
                "Group=anthropic/claude-sonnet-4-20250514\nAvailable Model Group Fallbacks=None",
                "type": None,
                "param": None,
                "code": "400",
            }
        },
        "context_overflow",
        code="BadRequestError",
        limit=200000,
        requested=212181,
        message='litellm.BadRequestError: AnthropicException - b\'{"type":"error","error":{"type":'
        '"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 179413 + 32768 > '
        "200000, decrease input length or `max_tokens` and try again\"}}'. Received Model Group=anthropic/claude-"
        "sonnet-4-202…",
    ),
    # Negative: a request mistake passed through LiteLLM (aliasrobotics/cai#77), its proxy writing "None" strings.
    case(
        "litellm-stream-options-without-stream",
        400,
        {
            "error": {
                "message": "litellm.BadRequestError: AzureException BadRequestError - The 'stream_options' parameter "
                "is only allowed when 'stream' is enabled.",
                "type": "None",
                "param": "None",
                "code": "400",
            }
        },
        "bad_request",
        code="BadRequestError",
        message="litellm.BadRequestError: AzureException BadRequestError - The 'stream_options' parameter is only "
        "allowed when 'stream' is enabled.",
    ),
    # ---- Mistral (its vLLM-like body: aurelio-labs/semantic-router#297) --------------------------------------
    case(
        "mistral-too-many-tokens-in-batch",
        400,
        {
            "object": "error",
            "message": "Too many tokens in batch. Max is 16384 got 17555",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },
        "context_overflow",
        code="invalid_request_error",
        limit=16384,
        requested=17555,
        message="Too many tokens in batch. Max is 16384 got 17555",
    ),
    # The chat wording as Mistral's known-limitations page is quoted by other projects' classifiers.
    case(
        "mistral-context",
        400,
        {
            "object": "error",
            "message": "Prompt contains 300000 tokens, too large for model with 131072 maximum context length",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },
        "context_overflow",
        code="invalid_request_error",
        limit=131072,
        requested=300000,
        message="Prompt contains 300000 tokens, too large for model with 131072 maximum context length",
    ),
    # ---- Gemini --------------------------------------------------------------------------------------------
    # google-gemini/gemini-cli#6678: streamGenerateContent answers a JSON array of errors.
    case(
        "gemini-context-array",
        400,
        [
            {
                "error": {
                    "code": 400,
                    "message": "The input token count (1200293) exceeds the maximum number of tokens allowed "
                    "(1048576).",
                    "errors": [
                        {
                            "message": "The input token count (1200293) exceeds the maximum number of tokens allowed "
                            "(1048576).",
                            "domain": "global",
                            "reason": "badRequest",
                        }
                    ],
                    "status": "INVALID_ARGUMENT",
                }
            }
        ],
        "context_overflow",
        code="INVALID_ARGUMENT",
        limit=1048576,
        requested=1200293,
        message="The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
    ),
    # BerriAI/litellm#18282: Gemini 2.5 states the limit only.
    case(
        "gemini-context-limit-only",
        400,
        {
            "error": {
                "code": 400,
                "message": "The input token count exceeds the maximum number of tokens allowed (1048576).",
                "status": "INVALID_ARGUMENT",
            }
        },
        "context_overflow",
        code="INVALID_ARGUMENT",
        limit=1048576,
        message="The input token count exceeds the maximum number of tokens allowed (1048576).",
    ),
    # continuedev/continue#10290: a bad key is a 400 whose ErrorInfo reason says so.
    case(
        "gemini-api-key-invalid",
        400,
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            }
        },
        "auth",
        code="API_KEY_INVALID",
        message="API key not valid. Please pass a valid API key.",
    ),
    # RooCodeInc/Roo-Code#3883: a per-minute quota, worth retrying after RetryInfo's delay.
    case(
        "gemini-resource-exhausted-per-minute",
        429,
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_"
                                "token_count",
                                "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
                                "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                                "quotaValue": "250000",
                            }
                        ],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"},
                ],
            }
        },
        "rate_limited",
        code="RESOURCE_EXHAUSTED",
        message="You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    ),
    # diegosouzapw/OmniRoute#9504: the same words, but a per-day quota: not worth retrying soon.
    case(
        "gemini-resource-exhausted-per-day",
        429,
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"},
                ],
            }
        },
        "quota_exhausted",
        code="RESOURCE_EXHAUSTED",
        message="You exceeded your current quota, please check your plan and billing details.",
    ),
    # Alishahryar1/free-claude-code#542 (Gemini's OpenAI-compatible endpoint): an unknown top-level field.
    case(
        "gemini-unknown-name",
        400,
        [
            {
                "error": {
                    "code": 400,
                    "message": 'Invalid JSON payload received. Unknown name "google": Cannot find field.',
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.BadRequest",
                            "fieldViolations": [
                                {
                                    "description": 'Invalid JSON payload received. Unknown name "google": Cannot find '
                                    "field."
                                }
                            ],
                        }
                    ],
                }
            }
        ],
        "unsupported_parameter",
        code="INVALID_ARGUMENT",
        param="google",
        message='Invalid JSON payload received. Unknown name "google": Cannot find field.',
    ),
    # glowingjade/obsidian-smart-composer#455: unknown name deep in tools; the top-level field is "tools".
    case(
        "gemini-unknown-name-nested",
        400,
        {
            "error": {
                "code": 400,
                "message": 'Invalid JSON payload received. Unknown name "additionalProperties" at '
                "'tools[10].function_declarations[0].parameters.properties[0].value.items': Cannot find field.",
                "status": "INVALID_ARGUMENT",
            }
        },
        "unsupported_parameter",
        code="INVALID_ARGUMENT",
        param="tools",
        message='Invalid JSON payload received. Unknown name "additionalProperties" at '
        "'tools[10].function_declarations[0].parameters.properties[0].value.items': Cannot find field.",
    ),
    # google/cookbook#425.
    case(
        "gemini-overloaded",
        503,
        {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        },
        "overloaded",
        code="UNAVAILABLE",
        message="The model is overloaded. Please try again later.",
    ),
    # Negative for "not supported": the model is gone (wwardaww/gnome-gemini-ai#21).
    case(
        "gemini-model-not-found",
        404,
        {
            "error": {
                "code": 404,
                "message": "models/gemini-1.0-pro is not found for API version v1beta, or is not supported for "
                "generateContent. Call ListModels to see the list of available models and their supported methods.",
                "status": "NOT_FOUND",
            }
        },
        "not_found",
        code="NOT_FOUND",
        message="models/gemini-1.0-pro is not found for API version v1beta, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods.",
    ),
    # ---- Cohere (docs.cohere.com/errors-reference: {"message": ...}) ----------------------------------------
    case(
        "cohere-too-many-tokens",
        400,
        {"message": COHERE_TOO_MANY},
        "context_overflow",
        limit=4081,
        requested=4292,
        message=COHERE_TOO_MANY,
    ),
    # Negative: "too many tokens" about the output cap, a bad max_tokens rather than a prompt too large.
    case(
        "cohere-max-tokens-cap",
        400,
        {
            "message": "too many tokens: max tokens must be less than or equal to 4096, the maximum output for this "
            "model - received 8192."
        },
        "bad_request",
        message="too many tokens: max tokens must be less than or equal to 4096, the maximum output for this model - "
        "received 8192.",
    ),
    case(
        "cohere-response-format-with-rag",
        400,
        {"message": "invalid request: response_format is not supported with RAG."},
        "unsupported_parameter",
        param="response_format",
        message="invalid request: response_format is not supported with RAG.",
    ),
    # ---- FastAPI / pydantic strict servers, and the proxies in front of them ---------------------------------
    # FastAPI's request_validation_exception_handler: {"detail": exc.errors()}; pydantic v2 extra_forbidden.
    case(
        "fastapi-extra-forbidden",
        422,
        {"detail": [EXTRA_FORBIDDEN]},
        "unsupported_parameter",
        code="extra_forbidden",
        param="stream_options",
        message="body.stream_options.include_usage: Extra inputs are not permitted",
    ),
    case(
        "proxy-nested-fastapi-detail",
        422,
        {
            "message": {
                "detail": [
                    {"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": {}},
                    EXTRA_FORBIDDEN,
                ]
            }
        },
        "unsupported_parameter",
        code="missing",
        param="stream_options",
        message="body.model: Field required; body.stream_options.include_usage: Extra inputs are not permitted",
    ),
    # Negative: a FastAPI validation error that is the request's own mistake.
    case(
        "fastapi-missing-field",
        422,
        {"detail": [{"type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": {}}]},
        "bad_request",
        code="missing",
        message="body.messages: Field required",
    ),
    # axum's Json extractor rejection (422, text/plain) around serde's unknown_field message.
    case(
        "axum-serde-unknown-field",
        422,
        "Failed to deserialize the JSON body into the target type: unknown field `stream_options`, expected one of "
        "`model`, `messages` at line 1 column 62",
        "unsupported_parameter",
        param="stream_options",
        message="Failed to deserialize the JSON body into the target type: unknown field `stream_options`, expected "
        "one of `model`, `messages` at line 1 column 62",
    ),
    # ---- Anthropic and plain HTTP ------------------------------------------------------------------------------
    # docs.anthropic.com/en/api/errors: 529 overloaded_error.
    case(
        "anthropic-overloaded-529",
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        "overloaded",
        code="overloaded_error",
        message="Overloaded",
    ),
    # anthropics/claude-code#8118: the same words under a 500.
    case(
        "anthropic-overloaded-as-500",
        500,
        {"type": "error", "error": {"type": "api_error", "message": "Overloaded"}, "request_id": None},
        "overloaded",
        code="api_error",
        message="Overloaded",
    ),
    # nginx's default error page in front of a server (a curl log in a stored GitHub issue).
    case(
        "nginx-502-page",
        502,
        "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n"
        "<hr><center>nginx/1.25.5</center>\n</body>\n</html>\n",
        "server_error",
        message="502 Bad Gateway 502 Bad Gateway nginx/1.25.5",
    ),
    case("empty-413", 413, "", "context_overflow", message="no details"),
    case("empty-500", 500, "", "server_error", message="no details"),
]


@pytest.mark.parametrize(("status", "body", "expected"), CASES)
def test_reads_what_the_vendor_means(status: int, body: object, expected: VendorError) -> None:
    assert read_vendor_error(status, body) == expected


def test_messages_stay_short() -> None:
    error = read_vendor_error(400, {"message": "too many tokens " + "x" * 1000})
    assert len(error.message) == MESSAGE_CHARS
    assert error.message.endswith("…")


def test_an_error_event_without_a_status_of_its_own_is_a_server_error() -> None:
    # Ollama's own stream writes {"error": "..."} after content started (server/routes.go streamResponse).
    error = read_vendor_error(200, {"error": "an error was encountered while running the model"})
    assert (error.status, error.meaning) == (200, "server_error")


def test_a_stream_error_event_is_read_by_the_status_it_states() -> None:
    # llama.cpp ends a stream that failed midway with data: {"error": {code, message, type}} (server.cpp).
    error = read_vendor_error(200, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
    assert (error.status, error.meaning) == (200, "overloaded")
