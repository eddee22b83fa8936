"""A dLLM behind a `mosa serve` endpoint as the target of attacks: what `mosa eval` samples when its
config names an `endpoint` instead of loading the model.

    target = ServedTarget(make_backend("openai:organism@http://127.0.0.1:8000/v1"), {"gen_length": 32}, seed=0)
    responses = target.respond(cases)

Each case goes to the endpoint's /v1/chat/completions, through mosa's OpenAI backend (its retries,
time-outs, concurrency limit and one-line errors), with its messages and, as mosa serve's dLLM
extensions (docs/serve.md), its prefill, its prompt_id, the run's sampler settings (defences
included) and seed, and return_order. The answer carries the response's token ids, the step that
committed each position, the decoding-order summary and what the defences did, so a completion
record holds what in-process sampling records:

- the settings are sent in full, the sampler's defaults filling what the config leaves out (as
  in process), so the server's own defaults never apply; the model's special ids come from the
  served model's card (GET /v1/models/ID), read once when the target is made, which also checks
  that the endpoint answers and serves that model before anything is sampled, and that the run's
  defences name every defence the server runs on all requests (records must say what ran);
- a case's noise is keyed by its prompt_id, its prompt and the seed, on the server as in process;
- a batch's cases are sent at once (at most the backend's `concurrency` in flight) and the server
  batches them itself; its rule (mosa.serve.engine) keeps a case's answer independent of its batch.

What is served is read from the same card: mosa serve's `mosa` field, the content fingerprints of
its model and adapter, its dtype and defaults, hashed as `fingerprint` (docs/serve.md). mosa eval
records it in the run's inputs.json and refuses a resume against a server whose model changed
(`served_changes`); every answer carries the hash as `system_fingerprint`, so a server restarted on
another model in the middle of a run stops it before a response of that model is recorded. A
server without the field (not mosa serve) is recorded by its model id only.

Token ids of attack texts (where a prefill ends, DIJA's layout) come from the server's /v1/tokenize,
each text asked once. An endpoint offers responses to conversations with prefill, nothing more:
attacks that need interventions, token bans, log-probabilities or gradients say so
(`needs_model_in_process`) and mosa eval refuses them before any work; a case that carries
interventions or bans is refused here rather than sent without them.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

from mosa.attacks.base import RoundStore, TargetBase, TargetResponse, TestCase
from mosa.backends import OpenAIChat, RequestRejected
from mosa.errors import MosaError
from mosa.sampling import SamplerConfig, defences_in_full, defences_label

# The sampler settings each request sends (mosa serve's extensions, and OpenAI's temperature and
# seed): every SamplerConfig setting but the special ids, which the served model's card gives.
SENT_SETTINGS = tuple(
    f.name for f in dataclasses.fields(SamplerConfig) if f.name not in ("mask_id", "eos_id", "eot_id", "shift_logits")
)
# What belongs to the served model, read from its card.
MODEL_SETTINGS = ("mask_id", "eos_id", "eot_id", "shift_logits")


class ServedTarget(TargetBase):
    """The model `backend.model` served at `backend.base_url`, sampled with `sampler` (SamplerConfig
    settings without the special ids) and `seed`."""

    def __init__(
        self, backend: OpenAIChat, sampler: dict, *, seed: int = 0, batch_size: int = 16, rounds: RoundStore | None = None
    ):
        self.backend = backend
        card = self._card()
        served = card.get("sampler")
        if not isinstance(served, dict) or any(name not in served for name in MODEL_SETTINGS):
            raise MosaError(
                f"{backend.base_url} serves {backend.model!r} without mosa's sampler settings on its model card; "
                "the endpoint of mosa eval must be `mosa serve`"
            )
        model_settings = {name: served[name] for name in MODEL_SETTINGS}
        self.served = served_record(card)
        super().__init__(SamplerConfig(**sampler, **model_settings, seed=seed), batch_size, rounds)
        self.sampler.validate()
        # A server started with --defence runs its defences on every request (docs/serve.md, Defences).
        fixed = [defence for defence in card.get("defences", []) if defence not in defences_in_full(self.sampler.defences)]
        if fixed:
            raise MosaError(
                f"{backend.base_url} runs {defences_label(fixed)} on every request, which this run's sampler.defences "
                "does not name; add them to sampler.defences, or attack a server started without --defence"
            )
        self._tokens: dict[str, list[int]] = {}

    def _card(self) -> dict:
        card = self.backend.request(f"models/{quote(self.backend.model)}")
        return card if isinstance(card, dict) else {}

    def tokens(self, text: str) -> list[int]:
        if text not in self._tokens:
            answer = self.backend.request("tokenize", {"model": self.backend.model, "prompt": text, "add_special_tokens": False})
            self._tokens[text] = answer["tokens"]
        return self._tokens[text]

    def respond(self, cases: list[TestCase]) -> list[TargetResponse]:
        for case in cases:
            if case.interventions or case.bans:
                raise MosaError(
                    f"case {case.prompt_id} writes over the canvas while sampling (interventions or bans), which a served "
                    "model cannot do; run its attack with the model in process (leave endpoint out)"
                )
        settings = {name: getattr(self.sampler, name) for name in SENT_SETTINGS}
        bodies = [
            {
                "model": self.backend.model,
                "messages": case.messages,
                **settings,
                "prefill": {str(position): text for position, text in case.prefill.items()},
                "prompt_id": case.prompt_id,
                "return_order": True,
            }
            for case in cases
        ]
        answers = self.backend.request_each("chat/completions", bodies)
        return [self._response(case, answer) for case, answer in zip(cases, answers)]

    def _check_still_served(self) -> None:
        """An answer came with another fingerprint: the server was restarted. Refuse it if what decides
        the answers changed (served_changes); another default the run overrides is taken on."""
        current = served_record(self._card())
        changed = served_changes(self.served, current)
        if changed:
            raise MosaError(
                f"the model served at {self.backend.base_url} changed while the run was sampling ({'; '.join(changed)}); "
                "resume against the same server, or start a new --output"
            )
        self.served = current

    def _response(self, case: TestCase, answer: dict | RequestRejected) -> TargetResponse:
        if isinstance(answer, RequestRejected):  # a prompt too long for the model, a prefill off the canvas, ...
            raise MosaError(f"case {case.prompt_id}: {answer}")
        given = answer.get("system_fingerprint") if isinstance(answer, dict) else None
        if self.served["fingerprint"] is not None and given != self.served["fingerprint"]:
            self._check_still_served()
        try:
            choice = answer["choices"][0]
            decoding = choice["decoding"]
            return TargetResponse(
                choice["message"]["content"],
                decoding["response_ids"],
                decoding["commit_step"],
                decoding["order"],
                defence_events=decoding["defence_events"],
            )
        except (KeyError, IndexError, TypeError):
            raise MosaError(
                f"{self.backend.url} answered case {case.prompt_id} without its decoding trace; the endpoint of mosa eval "
                "must be `mosa serve`"
            ) from None


def served_record(card: dict) -> dict:
    """What a model card says is served: mosa serve's `mosa` field (with its `fingerprint`), or, from
    a server without one, a record saying that only the model id is known."""
    identity = card.get("mosa")
    if isinstance(identity, dict) and isinstance(identity.get("fingerprint"), str):
        return identity
    return {
        "fingerprint": None,
        "note": "the server's model card has no `mosa` field (not mosa serve): only the model id is recorded, "
        "so a change of the model behind it cannot be seen",
    }


def served_changes(recorded: dict, current: dict) -> list[str]:
    """What changed between two served records, as 'part: before -> after', counting what decides the
    run's answers: the model's and the adapter's content, the dtype and the model's special ids. The
    server's other defaults are not: the run sends its own settings with every request. A server
    that gives no fingerprint cannot be compared, unless the run was recorded with one."""
    if recorded["fingerprint"] == current["fingerprint"] or recorded["fingerprint"] is None:
        return []
    if current["fingerprint"] is None:
        return ["it no longer says what it serves: its model card has no `mosa` field"]

    def described(part: dict | None) -> str:
        return "none" if part is None else f"{part['name']} (digest {part['digest'][:12]})"

    changed = [
        f"{part}: {described(recorded.get(part))} -> {described(current.get(part))}"
        for part in ("model", "adapter")
        if (recorded.get(part) or {}).get("digest") != (current.get(part) or {}).get("digest")
    ]
    if recorded.get("dtype") != current.get("dtype"):
        changed.append(f"dtype: {recorded.get('dtype')} -> {current.get('dtype')}")
    before, after = recorded.get("sampler") or {}, current.get("sampler") or {}
    changed += [
        f"{name}: {before.get(name)} -> {after.get(name)}" for name in MODEL_SETTINGS if before.get(name) != after.get(name)
    ]
    return changed
