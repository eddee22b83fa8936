"""The web application of `mosa serve`: OpenAI's /v1/models, /v1/chat/completions and /v1/completions
over one DiffusionLM, on FastAPI, and /v1/tokenize (vLLM's shape).

A request is checked whole before it waits for the model: its body (pydantic, mosa.serve.protocol),
its model name, its sampler settings, its prompt (rendered with the chat template for chat, tokenized
as given for completions) against the limits and the model's positions, and its prefill. Anything
wrong is a 4xx answer in OpenAI's error shape, and the server goes on serving. A request then takes
one slot per choice; with every slot taken a request is refused with 429 (OpenAI's clients retry
it). It goes to the engine (mosa.serve.engine), which batches it with the requests that can share
its canvas batch. A client that disconnects frees its slots at once: its choices are dropped from
the queue, or, when already sampling, discarded (the batch stops early if nobody is left in it).

What is served is fingerprinted (`served_identity`): the model's and the adapter's content
fingerprints, the dtype and the default sampler settings, hashed together. The model card carries
the record as its `mosa` field and every answer the hash as OpenAI's `system_fingerprint`, so a
client (mosa eval's served target) can tell that the model behind a URL changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.provenance import fingerprint_directory, fingerprint_model
from mosa.sampling import SamplerConfig, defences_in_full, defences_label, response_order
from mosa.serve.answers import Answer, AnswerText, StreamedText
from mosa.serve.engine import Engine, Job
from mosa.serve.protocol import APIError, ChatCompletionRequest, CompletionRequest, DiffusionOptions, TokenizeRequest


@dataclass
class ServeSettings:
    model_name: str  # the id clients name in "model"
    sampler: dict = field(default_factory=dict)  # SamplerConfig settings every request starts from
    api_key: str | None = None  # when set, every /v1 request must send it as a Bearer token
    max_prompt_tokens: int = 4096
    max_gen_length: int = 1024  # the longest canvas a request may ask for
    max_concurrency: int = 64  # choices admitted at once, waiting or sampling; more are refused with 429
    max_n: int = 8
    max_body_bytes: int = 1 << 20
    max_batch_size: int = 16
    batch_wait: float = 0.005  # seconds the engine waits for requests sent together to join a batch
    # What is served, fingerprinted ({"model": ..., "adapter": ...}, served_provenance); None: the
    # model card has no `mosa` field and answers no system_fingerprint.
    provenance: dict | None = None


class BodyTooLarge(HTTPException):
    """Raised while a body without a Content-Length is read past the limit."""


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` with 413, by its Content-Length or,
    for a chunked body, as soon as the bytes read pass the limit. (FastAPI's own max_body_size
    answers a declared length with plain text before the app's handlers; OpenAI's clients read the
    JSON error shape.)"""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(too_large(self.max_bytes).body(), status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # FastAPI re-raises an HTTPException met while reading the body
                raise BodyTooLarge(413, too_large(self.max_bytes).message)
            return message

        await self.app(scope, counted_receive, send)


def too_large(max_bytes: int) -> APIError:
    return APIError(413, f"the request body is over the server's limit of {max_bytes} bytes (mosa serve --max-body-bytes)")


class Slots:
    """Choices admitted at once (waiting or sampling), at most `limit`."""

    def __init__(self, limit: int):
        self.limit, self.taken = limit, 0

    def take(self, count: int) -> None:
        if self.taken + count > self.limit:
            raise APIError(
                429,
                f"the server is answering {self.taken} choices and takes at most {self.limit} at once; retry shortly",
                code="rate_limit_exceeded",
                kind="rate_limit_error",
            )
        self.taken += count

    def give_back(self, count: int) -> None:
        self.taken -= count


def create_app(lm: DiffusionLM, settings: ServeSettings) -> FastAPI:
    engine = Engine(lm, max_batch_size=settings.max_batch_size, batch_wait=settings.batch_wait)
    slots = Slots(settings.max_concurrency)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        yield
        engine.close()

    app = FastAPI(title="mosa serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.slots = engine, slots
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        headers = {"Retry-After": "1"} if error.status == 429 else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        if first["type"] == "json_invalid":
            return JSONResponse(APIError(400, "the body is not valid JSON").body(), status_code=400)
        return JSONResponse(APIError(400, f"{where or 'body'}: {first['msg']}", param=where or None).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        message = error.detail if error.status_code != 404 else f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(APIError(error.status_code, str(message)).body(), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception):
        return JSONResponse(APIError(500, f"the server failed: {type(error).__name__}: {error}").body(), status_code=500)

    def check_key(request: Request) -> None:
        if settings.api_key:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
                raise APIError(
                    401, "missing or wrong API key: send the server's key as 'Authorization: Bearer KEY'", code="invalid_api_key"
                )

    api = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    # The server's defences, each with every option in force: every request runs them (a request may
    # add defences, never drop or change these; docs/serve.md, Defences).
    server_defences = defences_in_full(settings.sampler.get("defences", []))
    # The sampler settings a request starts from, the model's special ids included: a client that
    # sends its own settings (mosa eval's served target) reads the ids here.
    default_sampler = dataclasses.asdict(lm.sampler_config(**{**settings.sampler, "defences": server_defences}))
    identity = None if settings.provenance is None else served_identity(settings.provenance, lm, default_sampler)

    def model_card() -> dict:
        card = {
            "id": settings.model_name,
            "object": "model",
            "created": created,
            "owned_by": "mosa",
            "sampler": default_sampler,
            "defences": server_defences,
        }
        if identity is not None:
            card["mosa"] = identity
        return card

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @api.get("/models")
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @api.get("/models/{model:path}")
    async def show_model(model: str):
        check_model(model, settings)
        return model_card()

    @api.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        """A text's token ids (vLLM's /tokenize shape): where a prefill's tokens fall on the canvas."""
        check_model(body.model, settings)
        tokens = lm.tokenizer(body.prompt, add_special_tokens=body.add_special_tokens)["input_ids"]
        return {"tokens": tokens, "count": len(tokens)}

    @api.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        config = request_config(lm, body, settings, server_defences)
        messages = [message.as_template_message() for message in body.messages]
        try:
            prompt = lm.check_prompts([messages], config.gen_length)[0]
        except MosaError as error:
            raise APIError(400, str(error), param="messages") from None
        return await answer(request, body, config, prompt, chat=True)

    @api.post("/completions")
    async def completions(body: CompletionRequest, request: Request):
        config = request_config(lm, body, settings, server_defences)
        if not body.prompt.strip():
            raise APIError(400, "prompt is empty; give it some text", param="prompt")
        prompt = lm.tokenizer(body.prompt)["input_ids"]
        excess = lm.excess_positions(len(prompt), config.gen_length)
        if excess > 0:
            raise APIError(
                400,
                f"the prompt has {len(prompt)} tokens; with gen_length={config.gen_length} it needs {len(prompt) + config.gen_length} "
                f"positions and the model has {lm.max_positions}: shorten it by {excess} tokens or lower gen_length",
                param="prompt",
                code="context_length_exceeded",
            )
        return await answer(request, body, config, prompt, chat=False)

    async def answer(request: Request, body: DiffusionOptions, config: SamplerConfig, prompt: list[int], chat: bool):
        if len(prompt) > settings.max_prompt_tokens:
            raise APIError(
                400,
                f"the prompt has {len(prompt)} tokens; this server takes at most {settings.max_prompt_tokens} (mosa serve --max-prompt-tokens)",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        prefill = prefill_ids(lm, body.prefill or {}, config)
        reader = AnswerText(
            lm.tokenizer,
            end_ids={lm.eos_id, lm.eot_id},
            special_ids={lm.eos_id, lm.eot_id, lm.pad_id, lm.mask_id},
            max_tokens=body.token_cap,
            stop=body.stop or [],
        )
        slots.take(body.n)
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def sender(index: int):
            def send(event: tuple) -> None:
                try:
                    loop.call_soon_threadsafe(events.put_nowait, (index, event))
                except RuntimeError:  # the event loop has closed: the server is stopping
                    pass

            return send

        # What keys the noise: the request's prompt_id; with neither it nor a seed given, a fresh id, so
        # that a sampled request draws anew each time, as OpenAI's API does without a seed (the answer
        # carries the id: sent back with the same settings, it reproduces the answer).
        base_id = body.prompt_id if body.prompt_id is not None else ("" if body.seed is not None else uuid.uuid4().hex)
        jobs = [
            Job(
                config=config,
                prompt=prompt,
                prefill=prefill,
                noise_id=base_id if index == 0 else f"{base_id} #{index + 1}",  # n copies: a sample each
                stream=body.stream,
                send=sender(index),
            )
            for index in range(body.n)
        ]
        held = set(range(body.n))  # the choices whose slots are still taken

        def release(index: int) -> None:
            if index in held:
                held.discard(index)
                slots.give_back(1)

        def drop_all() -> None:
            for index, job in enumerate(jobs):
                job.cancelled.set()
                release(index)

        try:
            engine.submit(jobs)
        except RuntimeError as error:
            drop_all()
            raise APIError(503, str(error)) from None
        fingerprint = None if identity is None else identity["fingerprint"]
        reply = Reply(chat, settings.model_name, body, lm, reader, len(prompt), base_id, fingerprint)
        if body.stream:
            # A client that goes away stops the stream between two chunks, where the generator's own
            # `finally` may not run until it is collected: the background task frees the slots then.
            return StreamingResponse(
                stream_events(reply, events, jobs, release, drop_all),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                background=BackgroundTask(drop_all),
            )
        try:
            finished: dict[int, tuple] = {}
            while len(finished) < len(jobs):
                try:
                    index, event = await asyncio.wait_for(events.get(), timeout=0.25)
                except TimeoutError:
                    if await request.is_disconnected():
                        return None  # nobody reads the answer; `finally` frees the slots
                    continue
                if event[0] == "error":
                    raise sampling_failed(event[1])
                if event[0] == "done":
                    finished[index] = event
                    release(index)
            return reply.whole([finished[index] for index in range(len(jobs))])
        finally:
            drop_all()

    app.include_router(api)
    return app


def served_provenance(model: str, adapter: str | Path | None) -> dict:
    """The content fingerprints of a served model (a checkpoint directory, a hub id, organism) and
    adapter, without their paths and file lists, which are the server's business."""
    return {
        "model": fingerprint_summary(fingerprint_model(model)),
        "adapter": None if adapter is None else fingerprint_summary(fingerprint_directory(adapter)),
    }


def fingerprint_summary(fingerprint: dict) -> dict:
    return {key: fingerprint[key] for key in ("name", "kind", "content", "digest")}


def served_identity(provenance: dict, lm: DiffusionLM, default_sampler: dict) -> dict:
    """The model card's `mosa` field: what is served (provenance), in which dtype, with which default
    sampler settings, and `fingerprint`, the sha256 of all of it as canonical JSON."""
    dtype = str(next(lm.module.parameters()).dtype).removeprefix("torch.")
    identity = {**provenance, "dtype": dtype, "sampler": default_sampler}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"fingerprint": hashlib.sha256(canonical.encode()).hexdigest(), **identity}


def check_model(model: str, settings: ServeSettings) -> None:
    if model != settings.model_name:
        raise APIError(
            404,
            f"model {model!r} is not served here; this server serves {settings.model_name!r}",
            param="model",
            code="model_not_found",
        )


def request_config(
    lm: DiffusionLM, body: DiffusionOptions, settings: ServeSettings, server_defences: list[dict]
) -> SamplerConfig:
    """The server's sampler defaults with the request's settings over them, checked; the defences
    written in full, so that requests with equal defences share a canvas batch (mosa.serve.engine)."""
    check_model(body.model, settings)
    if body.n > settings.max_n:
        raise APIError(
            400, f"n={body.n}: this server answers at most {settings.max_n} choices per request (mosa serve --max-n)", param="n"
        )
    requested = body.sampler_settings()
    requested["defences"] = server_defences if body.defences is None else request_defences(body.defences, server_defences)
    config = lm.sampler_config(**{**settings.sampler, **requested})
    if config.gen_length > settings.max_gen_length:
        raise APIError(
            400,
            f"gen_length={config.gen_length}: this server samples canvases of at most {settings.max_gen_length} tokens (mosa serve --max-gen-length)",
            param="gen_length",
        )
    try:
        config.validate()
    except MosaError as error:
        raise APIError(400, f"sampler settings: {error}") from None
    return config


def request_defences(requested: list, server_defences: list[dict]) -> list[dict]:
    """A request's own defences, in full: they replace the server's list only as a list that still
    holds each of the server's defences with the server's options (a request may add, not drop or
    weaken: a defended endpoint stays defended whoever sends the requests)."""
    try:
        defences = defences_in_full(requested)
    except MosaError as error:
        raise APIError(400, f"defences: {error}", param="defences") from None
    dropped = [defence for defence in server_defences if defence not in defences]
    if dropped:
        raise APIError(
            400,
            f"defences: this server runs {defences_label(dropped)} on every request; keep it in the request's defences "
            "with these options, or leave defences out (a request may add defences, not remove or change the server's)",
            param="defences",
        )
    return defences


def prefill_ids(lm: DiffusionLM, prefill: dict[int, str], config: SamplerConfig) -> dict[int, list[int]]:
    """{response position: text} -> {response position: token ids}, each span inside the canvas,
    non-empty, free of the mask token and apart from the others."""
    spans, taken = {}, set()
    for position, text in sorted(prefill.items()):
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        span = set(range(position, position + len(ids)))
        if not ids:
            problem = "is empty"
        elif position < 0 or position + len(ids) > config.gen_length:
            problem = f"spans [{position}, {position + len(ids)}) tokens, outside the canvas [0, {config.gen_length})"
        elif config.mask_id in ids:
            problem = "holds the mask token"
        elif span & taken:
            problem = "overlaps another prefill"
        else:
            spans[position] = ids
            taken |= span
            continue
        raise APIError(400, f"prefill {text!r} at response position {position} {problem}", param="prefill")
    return spans


def sampling_failed(error: Exception) -> APIError:
    if isinstance(error, MosaError):
        return APIError(400, str(error))
    return APIError(500, f"sampling failed: {type(error).__name__}: {error}")


class Reply:
    """Builds one request's answers in OpenAI's shapes: whole, or as server-sent-event chunks."""

    def __init__(
        self,
        chat: bool,
        model: str,
        body: DiffusionOptions,
        lm: DiffusionLM,
        reader: AnswerText,
        prompt_tokens: int,
        prompt_id: str,
        fingerprint: str | None,
    ):
        self.chat, self.model, self.body, self.lm, self.reader = chat, model, body, lm, reader
        self.prompt_tokens, self.prompt_id, self.fingerprint = prompt_tokens, prompt_id, fingerprint
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def usage(self, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def decoding(self, response_ids: list[int], commit_step: list[int], defence_events: dict) -> dict:
        """The decoding trace (return_order): the canvas's ids, the step that committed each position
        (-1: prefilled), its order summary and what the defences did, as mosa eval records them."""
        lm = self.lm
        order = response_order(response_ids, commit_step, end_ids={lm.eos_id, lm.eot_id, lm.pad_id}, mask_id=lm.mask_id)
        return {"response_ids": response_ids, "commit_step": commit_step, "order": order, "defence_events": defence_events}

    @staticmethod
    def finish_reason(answer: Answer, defence_events: dict) -> str:
        """OpenAI's reason for a response a safety filter cut, "content_filter", when a defence ended
        it (an EOS monitor that fired: a refusal), so that a red-teaming tool sees the defence act."""
        return "content_filter" if defence_events else answer.finish_reason

    def choice(self, index: int, text: str | None, finish_reason: str | None, *, delta: bool = False) -> dict:
        if not self.chat:
            return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        if delta:
            return {
                "index": index,
                "delta": {} if text is None else {"content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        return {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }

    def whole(self, finished: list[tuple]) -> dict:
        choices, completion_tokens = [], 0
        for index, (_, response_ids, commit_step, defence_events) in enumerate(finished):
            answer = self.reader.answer(response_ids)
            completion_tokens += answer.completion_tokens
            choice = self.choice(index, answer.text, self.finish_reason(answer, defence_events))
            if self.body.return_order:
                choice["decoding"] = self.decoding(response_ids, commit_step, defence_events)
            choices.append(choice)
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
            "usage": self.usage(completion_tokens),
            "prompt_id": self.prompt_id,
        }

    def chunk(self, choices: list[dict], usage: dict | None = None) -> str:
        payload = {
            "id": self.id,
            "object": self.object + (".chunk" if self.chat else ""),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        }
        if usage is not None:
            payload["usage"] = usage
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def stream_events(reply: Reply, events: asyncio.Queue, jobs: list[Job], release, drop_all):
    """Server-sent events: each choice's text as its committed prefix grows, its finish reason, the
    usage when asked for (stream_options.include_usage), then [DONE]."""
    texts = [StreamedText(reply.reader) for _ in jobs]
    completion_tokens, done = 0, 0
    try:
        if reply.chat:  # OpenAI's first chunk of each choice carries the role
            yield reply.chunk(
                [
                    {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                    for index in range(len(jobs))
                ]
            )
        while done < len(jobs):
            index, event = await events.get()
            if event[0] == "error":
                error = sampling_failed(event[1])
                yield f"data: {json.dumps(error.body())}\n\n"
                return
            if event[0] == "prefix":
                delta = texts[index].advance(event[1])
                if delta:
                    yield reply.chunk([reply.choice(index, delta, None, delta=True)])
                continue
            _, response_ids, commit_step, defence_events = event
            release(index)
            done += 1
            answer = reply.reader.answer(response_ids)
            completion_tokens += answer.completion_tokens
            delta = texts[index].finish(answer)
            if delta:
                yield reply.chunk([reply.choice(index, delta, None, delta=True)])
            last = reply.choice(index, None if reply.chat else "", reply.finish_reason(answer, defence_events), delta=True)
            if reply.body.return_order:
                last["decoding"] = reply.decoding(response_ids, commit_step, defence_events)
            yield reply.chunk([last])
        if reply.body.stream_options is not None and reply.body.stream_options.include_usage:
            yield reply.chunk([], usage=reply.usage(completion_tokens))
        yield "data: [DONE]\n\n"
    finally:
        drop_all()
