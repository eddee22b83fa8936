"""`mosa serve`: serve a masked-diffusion LM (and a MOSA adapter) on an OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path

from mosa.cli.options import add_model_options, add_sampler_options, sampler_settings
from mosa.errors import MosaError

DEFAULT_KEY_ENV = "MOSA_SERVE_API_KEY"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a dLLM on an OpenAI-compatible endpoint (/v1/chat/completions, /v1/completions)",
        epilog="--defence runs on every request; a request's `defences` field may add defences, never drop or change "
        "the server's (docs/serve.md, Defences)",
    )
    add_model_options(parser)
    parser.add_argument("--adapter", type=Path, help="a peft adapter directory (mosa align's runs/x/adapter), merged in")
    add_sampler_options(parser)
    server = parser.add_argument_group("server (docs/serve.md)")
    server.add_argument(
        "--host", default="127.0.0.1", help="address to bind; any but loopback needs an API key (default 127.0.0.1)"
    )
    server.add_argument("--port", type=int, default=8000)
    server.add_argument("--served-model-name", help="the model id clients send (default: --model as given)")
    server.add_argument(
        "--api-key-env",
        default=DEFAULT_KEY_ENV,
        help=f"environment variable holding the API key clients must send as a Bearer token (default {DEFAULT_KEY_ENV}); "
        "required to bind anything but loopback, checked whenever set",
    )
    server.add_argument("--max-prompt-tokens", type=int, default=4096)
    server.add_argument(
        "--max-gen-length",
        type=int,
        help="the longest canvas a request may ask for (default: 1024, or less when the model has fewer positions)",
    )
    server.add_argument("--max-concurrency", type=int, default=64, help="choices admitted at once; more get 429")
    server.add_argument("--max-n", type=int, default=8, help="choices per request")
    server.add_argument("--max-body-bytes", type=int, default=1 << 20)
    server.add_argument("--max-batch-size", type=int, default=16, help="requests sampled in one canvas batch (1: one at a time)")
    server.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long the sampler waits for requests sent together")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import uvicorn

    from mosa.models import check_adapter, load_model, merge_adapter
    from mosa.profiles import find_profile, model_path
    from mosa.sampling import SamplerConfig
    from mosa.serve import ServeSettings, create_app, served_provenance

    if not args.model:
        raise MosaError("--model is required (a checkpoint directory, a hub id, or organism)")
    if args.adapter is not None:
        check_adapter(args.adapter, "--adapter")
    for name in ("port", "max_prompt_tokens", "max_gen_length", "max_concurrency", "max_n", "max_body_bytes", "max_batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise MosaError(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    if args.batch_wait_ms < 0:
        raise MosaError(f"--batch-wait-ms {args.batch_wait_ms} must be >= 0")
    api_key = os.environ.get(args.api_key_env) or None
    if api_key is None and not is_loopback(args.host):
        raise MosaError(
            f"--host {args.host} would serve the model beyond this machine with no key; set {args.api_key_env} "
            "to the API key clients must send, or bind 127.0.0.1"
        )
    profile = find_profile(args.model)  # the organism's defaults: the settings its card was measured with
    settings = {**(profile.sampler_defaults(args.model) if profile else {}), **sampler_settings(args)}
    SamplerConfig(**settings).validate(require_ids=False)
    check_port_free(args.host, args.port)

    lm = load_model(
        model_path(args.model), trust_remote_code=args.trust_remote_code, family=args.family, dtype=args.dtype, device=args.device
    )
    if args.adapter is not None:
        lm = merge_adapter(lm, args.adapter)
    max_gen_length = served_gen_length(args.max_gen_length, lm.max_positions)
    # After loading: a hub id's snapshot is in the cache by now, so its content is fingerprinted.
    provenance = served_provenance(args.model, args.adapter)
    serve_settings = ServeSettings(
        model_name=args.served_model_name or args.model,
        sampler=settings,
        api_key=api_key,
        max_prompt_tokens=args.max_prompt_tokens,
        max_gen_length=max_gen_length,
        max_concurrency=args.max_concurrency,
        max_n=args.max_n,
        max_body_bytes=args.max_body_bytes,
        max_batch_size=args.max_batch_size,
        batch_wait=args.batch_wait_ms / 1000,
        provenance=provenance,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    key_note = f"Bearer key from {args.api_key_env}" if api_key else "no key"
    print(f"mosa serve: {serve_settings.model_name} at http://{host}:{args.port}/v1 ({key_note})", file=sys.stderr)
    uvicorn.run(create_app(lm, serve_settings), host=args.host, port=args.port, log_level="warning")


def served_gen_length(asked: int | None, positions: int | None, default: int = 1024) -> int:
    """The longest canvas requests may ask for: at most the model's positions less one for the prompt;
    a --max-gen-length beyond them is refused (every such request would be)."""
    if asked is None:
        return default if positions is None else min(default, positions - 1)
    if positions is not None and asked >= positions:
        raise MosaError(
            f"--max-gen-length {asked}: the model has {positions} positions, prompt included; give at most {positions - 1}"
        )
    return asked


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_port_free(host: str, port: int) -> None:
    """Refuse, before the model loads, an address this process cannot listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise MosaError(
                f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port or --host"
            ) from None
