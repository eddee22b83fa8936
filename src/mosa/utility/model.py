"""mosa's masked-diffusion LMs as an lm-evaluation-harness model, registered as `mosa`.

    python -m mosa.utility.lm_eval --model mosa --tasks gsm8k \\
        --model_args model=GSAI-ML/LLaDA-8B-Instruct,adapter=runs/llada-mosa/adapter,gen_length=512,steps=512,block_length=512,dtype=bfloat16

    lm_eval.simple_evaluate(model=MosaLM(model=lm, gen_length=32, steps=32, block_length=8), tasks=[...])

How lm-eval's three requests are answered (docs/utility.md, "The lm-eval model"):

  generate_until   mosa's exact sampler (mosa.sampling.generate) on [context ; gen_length masks], as
                   LLaDA's eval_llada.py samples, `batch_size` contexts a call (left-padded, longest
                   first, lm-eval's Collator). The response ends at its first EOS or EoT token (where an
                   autoregressive model stops) and is cut before the request's first stop sequence
                   (`until`), as lm-eval's HF model cuts. A task's max_gen_toks is not used: the canvas,
                   gen_length, is a sampler setting, as in LLaDA's evaluation.
  loglikelihood    LLaDA's Monte-Carlo estimate (its get_log_likelihood) of the continuation's
                   log-likelihood under the masked-diffusion ELBO, on LLaDA's canvas [context ;
                   continuation]: mc_num samples, each masking a random number l (uniform on 1..m,
                   stratified) of the continuation's m tokens and scoring them with weight m / l; with
                   cfg > 0, classifier-free guidance (the unconditional reading has the context masked).
                   is_greedy: whether the greedy decoding of the continuation's m positions (mosa's
                   sampler, one token a step, lowest confidence remasked) gives the continuation, as
                   LLaDA's suffix_greedy_prediction checks.
  loglikelihood_rolling  refused: a masked-diffusion model has no left-to-right perplexity.

Cost, in forward passes of the canvas: generate_until `steps` per batch of contexts (twice with cfg);
loglikelihood mc_num per request, batch_size samples a call, plus m with is_check_greedy (each twice
with cfg).
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import Collator, handle_stop_sequences, postprocess_generated_text

from mosa.errors import MosaError
from mosa.models import DiffusionLM, check_adapter
from mosa.models.likelihood import elbo_masks
from mosa.progress import note, progress_bar
from mosa.sampling import SamplerConfig, generate
from mosa.sampling.sampler import accepts_logits_to_keep, window_logits

# LLaDA's eval_llada.py default canvas (with steps = block_length = gen_length), for a model no mosa
# profile gives sampler settings to.
LLADA_GEN_LENGTH = 1024
DTYPES = ("auto", "float32", "bfloat16", "float16")
# What lm-eval's command line passes as the device unless told otherwise; like lm-eval's HF model, the
# mosa model then runs on the CPU where there is no GPU.
LM_EVAL_DEVICE = "cuda:0"


@register_model("mosa")
class MosaLM(TemplateLM):
    """A mosa DiffusionLM answering lm-eval's requests. Every setting is a model_args key.

    model: a checkpoint directory, a hub id, a name a mosa profile knows ("organism"), or a loaded
    DiffusionLM; adapter: a peft adapter directory, merged into the weights (mosa.models.merge_adapter).
    Sampler: gen_length, steps, block_length (defaults: the model's profile's, else LLaDA's eval_llada.py
    gen_length 1024; steps and block_length default to gen_length), temperature, remasking, logits_eos_inf, confidence_eos_eot_inf, seed (of the
    sampler's noise and of the ELBO's masks), defences (the sampler's training-free defences, mosa.sampling.defences:
    a list of names or {name: ..., OPTION: VALUE} mappings; none by default). Likelihood: mc_num (128), cfg (0; also guides generation),
    is_check_greedy (True). batch_size: contexts per sampler call, ELBO samples per forward call.
    truncate: keep a context's last tokens when it does not fit the model's positions (else refused).
    """

    def __init__(
        self,
        model: str | DiffusionLM | None = None,
        adapter: str | None = None,
        gen_length: int | None = None,
        steps: int | None = None,
        block_length: int | None = None,
        temperature: float = 0.0,
        remasking: str = "low_confidence",
        logits_eos_inf: bool = False,
        confidence_eos_eot_inf: bool = False,
        defences: list | None = None,
        cfg: float = 0.0,
        mc_num: int = 128,
        is_check_greedy: bool = True,
        seed: int = 0,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,  # lm-eval's, for batch_size=auto, which this model does not take
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
        family: str | None = None,
        truncate: bool = False,
        **unknown,
    ):
        super().__init__()
        if unknown:
            raise MosaError(f"unknown model_args {sorted(unknown)}; the mosa model takes {sorted(MODEL_ARGS)}")
        if model is None or model == "":
            raise MosaError("model_args needs model=PATH_OR_HUB_ID (or model=organism)")
        self.batch_size = _positive_int("batch_size", batch_size)
        self.mc_num = _positive_int("mc_num", mc_num)
        self.is_check_greedy = _flag("is_check_greedy", is_check_greedy)
        self.truncate = _flag("truncate", truncate)
        if adapter is not None:
            check_adapter(adapter)

        # Every setting is checked before the (possibly long) model load.
        defaults = self._default_settings(model)
        given = lambda name, value, default: defaults.get(name, default) if value is None else value  # noqa: E731
        gen_length = given("gen_length", gen_length, LLADA_GEN_LENGTH)
        settings = {
            "gen_length": gen_length,
            # LLaDA's evaluation decodes one token a step in one block unless told otherwise.
            "steps": given("steps", steps, gen_length),
            "block_length": given("block_length", block_length, gen_length),
            "temperature": temperature,
            "remasking": remasking,
            "cfg_scale": cfg,
            "logits_eos_inf": _flag("logits_eos_inf", logits_eos_inf),
            "confidence_eos_eot_inf": _flag("confidence_eos_eot_inf", confidence_eos_eot_inf),
            "defences": list(defences or []),
            "seed": seed,
        }
        SamplerConfig(**settings).validate(require_ids=False)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise MosaError(f"seed={seed!r} must be an integer")
        if dtype not in DTYPES:
            raise MosaError(f"dtype={dtype!r} is not one of {', '.join(DTYPES)}")

        self.accelerator = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under accelerate launch / torchrun: lm-eval's data parallelism
            from accelerate import Accelerator

            self.accelerator = Accelerator()
            self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
            device = str(self.accelerator.device)  # each process its own device, whatever lm-eval's default says
        self.lm = (
            model if isinstance(model, DiffusionLM) else self._load(model, adapter, dtype, device, trust_remote_code, family)
        )
        self._device = self.lm.device
        self.tokenizer = self.lm.tokenizer
        self.sampler = self.lm.sampler_config(**settings)
        self.info = {"model": model if isinstance(model, str) else type(model.module).__name__, "adapter": adapter, **settings}
        self.info.update(mc_num=self.mc_num, is_check_greedy=self.is_check_greedy, batch_size=self.batch_size)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> MosaLM:
        """lm-eval's constructor. Its command line always passes batch_size (1 unless --batch_size is
        given) and device beside the model_args: a key model_args set themselves keeps their value."""
        extra = {key: value for key, value in (additional_config or {}).items() if value is not None and key not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> MosaLM:
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @staticmethod
    def _default_settings(model) -> dict:
        """The sampler settings a model's profile gives it (the organism's: its card's); none for others."""
        from mosa.profiles import find_profile

        profile = find_profile(model) if isinstance(model, str) else None
        return {} if profile is None else profile.sampler_defaults(model)

    @staticmethod
    def _load(model: str, adapter, dtype, device, trust_remote_code, family) -> DiffusionLM:
        from mosa.models import load_model, merge_adapter
        from mosa.profiles import model_path

        device = device or LM_EVAL_DEVICE
        if device.startswith("cuda") and not torch.cuda.is_available():
            if device != LM_EVAL_DEVICE:
                raise MosaError(f"device={device!r}: torch sees no CUDA device here; use device=cpu")
            note(f"mosa: lm-eval's default device {LM_EVAL_DEVICE} is not available here; running on the CPU")
            device = "cpu"
        lm = load_model(
            model_path(model),
            trust_remote_code=_flag("trust_remote_code", trust_remote_code),
            family=family,
            dtype=dtype,
            device=device,
        )
        return lm if adapter is None else merge_adapter(lm, adapter)

    # Data parallelism: lm-eval deals each process its share of every task's documents, pads the shares
    # to equal length and gathers the metrics through these (one process: the base class's no-ops).

    def all_gather(self, tensor):
        return tensor if self.accelerator is None else self.accelerator.gather(tensor)

    def gather_object(self, obj, dst=0):
        if self.accelerator is None:
            return [obj]
        import torch.distributed as dist

        gathered = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, gathered, dst=dst)
        return gathered

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    # What lm-eval reads of a model besides its three requests.

    @property
    def eot_token_id(self) -> int:
        return self.lm.eos_id

    @property
    def prefix_token_id(self) -> int:
        """The context of a continuation scored with no context: BOS where the tokenizer has one."""
        bos = self.tokenizer.bos_token_id
        return self.lm.eos_id if bos is None else bos

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def get_model_info(self) -> dict:
        """Recorded in lm-eval's results under "config": the model, its adapter and every setting."""
        return {"mosa": self.info}

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        """lm-eval's --apply_chat_template: the conversation rendered by the model's chat template. With
        the assistant header (mosa's rendering: a message the template would drop is refused), or
        continuing the last, assistant message when lm-eval prefills one."""
        if add_generation_prompt:
            return self.lm.chat_text(chat_history)
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False, continue_final_message=True)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """Token ids as LLaDA's evaluation encodes (the tokenizer's own special tokens, BOS for LLaDA),
        without a second BOS on a text that starts with one (a rendered chat)."""
        if add_special_tokens is None:
            bos = self.tokenizer.bos_token
            add_special_tokens = not (bos and string.startswith(bos))
        return self.tokenizer(string, add_special_tokens=add_special_tokens)["input_ids"]

    # generate_until

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Each request's (context, gen_kwargs) -> the sampler's response, cut (module docstring)."""
        items = [
            (self.fit(self.tok_encode(context), self.sampler.gen_length), context, kwargs)
            for context, kwargs in (r.args for r in requests)
        ]
        collator = Collator(items, sort_fn=lambda item: (-len(item[0]), item[1]))  # longest first: less padding
        bar = progress_bar(total=len(items), desc="generate_until", unit="request", disable=disable_tqdm)
        answers = []
        for chunk in collator.get_batched(n=self.batch_size):
            input_ids, attention_mask = self.left_pad([ids for ids, _, _ in chunk])
            contexts = [context for _, context, _ in chunk]
            output = generate(self.lm.module, input_ids, attention_mask, config=self.sampler, prompt_ids=contexts)
            for response, (_, context, kwargs) in zip(output.response, chunk):
                stops = handle_stop_sequences(kwargs.get("until"), eos=None)
                text = postprocess_generated_text(self.response_text(response), stop=stops, think_end_token=None)
                answers.append(text)
                self.cache_hook.add_partial("generate_until", (context, kwargs), text)
            bar.update(len(chunk))
        bar.close()
        return collator.get_original(answers)

    def response_text(self, response: torch.Tensor) -> str:
        """A response's text up to its first EOS or EoT token, special tokens (masks left) dropped."""
        ids = response.tolist()
        ends = [index for index, token in enumerate(ids) if token in (self.lm.eos_id, self.lm.eot_id)]
        return self.tokenizer.decode(ids[: ends[0]] if ends else ids, skip_special_tokens=True)

    # loglikelihood (TemplateLM.loglikelihood tokenises each pair as lm-eval's HF model does, then calls this)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """((context, continuation), context ids, continuation ids) -> (ELBO estimate, is_greedy) each."""
        collator = Collator(requests, sort_fn=lambda r: (-(len(r[1]) + len(r[2])), tuple(r[1] + r[2])))
        bar = progress_bar(total=len(requests), desc="loglikelihood", unit="request", disable=disable_tqdm)
        answers = []
        # Requests of a chunk share forward calls: batch_size samples each, mc_num samples a request.
        for chunk in collator.get_batched(n=max(1, self.batch_size // self.mc_num)):
            pairs = [(self.fit(context, len(continuation)), continuation) for _, context, continuation in chunk]
            estimates = elbo_loglikelihoods(
                self.lm,
                pairs,
                mc_num=self.mc_num,
                batch_size=self.batch_size,
                cfg_scale=self.sampler.cfg_scale,
                seed=self.sampler.seed,
            )
            greedy = self.greedy_continuations(pairs) if self.is_check_greedy else [False] * len(pairs)
            for (strings, _, _), estimate, is_greedy in zip(chunk, estimates, greedy):
                answers.append((estimate, is_greedy))
                self.cache_hook.add_partial("loglikelihood", strings, (estimate, is_greedy))
            bar.update(len(chunk))
        bar.close()
        return collator.get_original(answers)

    def greedy_continuations(self, pairs: list[tuple[list[int], list[int]]]) -> list[bool]:
        """Whether greedy decoding fills each continuation's m masked positions after its context with
        the continuation: mosa's sampler at temperature 0 with gen_length = steps = block_length = m
        (one token a step, the most confident; cfg as configured), LLaDA's suffix_greedy_prediction."""
        greedy = [len(continuation) == 0 for _, continuation in pairs]
        by_length = defaultdict(list)
        for index, (_, continuation) in enumerate(pairs):
            if continuation:
                by_length[len(continuation)].append(index)
        for m, indices in by_length.items():
            config = self.lm.sampler_config(gen_length=m, steps=m, block_length=m, cfg_scale=self.sampler.cfg_scale)
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                input_ids, attention_mask = self.left_pad([pairs[index][0] for index in batch])
                response = generate(self.lm.module, input_ids, attention_mask, config=config).response.cpu()
                for row, index in zip(response, batch):
                    greedy[index] = row.tolist() == list(pairs[index][1])
        return greedy

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise MosaError(
            "loglikelihood_rolling (perplexity tasks such as wikitext) is not supported by the mosa model: a masked-diffusion "
            "model has no left-to-right likelihood; use loglikelihood or generate_until tasks"
        )

    # Canvases

    def fit(self, context: list[int], response_length: int) -> list[int]:
        """The context, or with truncate=True its last tokens, such that it and `response_length` more
        positions fit the model's positions; refused in one line otherwise."""
        excess = self.lm.excess_positions(len(context), response_length)
        if excess <= 0:
            return context
        if not self.truncate or excess >= len(context):
            raise MosaError(
                f"a request's context has {len(context)} tokens and needs {response_length} more positions, {excess} beyond the "
                f"model's {self.lm.max_positions}; lower gen_length, or set truncate=True to keep the context's last tokens"
            )
        return context[excess:]

    def left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token id lists -> input_ids (B x T), left-padded, and the attention mask (None when no row is padded)."""
        input_ids, attention_mask = pad_left(rows, self.lm.pad_id)
        device = self.lm.device
        return input_ids.to(device), None if attention_mask is None else attention_mask.to(device)


def pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token id lists -> left-padded ids (B x T) and attention mask, None when all rows are equally long
    (the model then reads exactly what LLaDA's reference gives it: no mask)."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[index, width - len(row) :] = 1
    return input_ids, None if bool(attention_mask.all()) else attention_mask


@torch.no_grad()
def elbo_loglikelihoods(
    lm: DiffusionLM,
    pairs: list[tuple[list[int], list[int]]],
    *,
    mc_num: int,
    batch_size: int,
    cfg_scale: float = 0.0,
    seed: int = 0,
) -> list[float]:
    """LLaDA's Monte-Carlo ELBO estimate of log p(continuation | context) for each (context ids,
    continuation ids) pair, on the canvas [context ; continuation]. mc_num forward passes a pair
    (twice with cfg), batch_size canvases a call across pairs (left-padded when their lengths differ).

    Each pair's samples mask the continuation as mosa.models.likelihood.elbo_masks draws (the same
    draws as elbo_logprobs with gen_length = m, whose docstring gives the estimator's exact value);
    sample j, masking l_j of the m tokens, scores sum over masked i of (m / l_j) log p(y_i | the rest),
    and the estimate is the mean over samples. With cfg_scale = w > 0 the log-probabilities are those of
    the guided logits u + (w + 1)(c - u), u read with the context masked, as LLaDA's get_logits.
    An empty continuation has log-likelihood 0. A pair's estimate depends on the pair and seed alone,
    not on the rest of its batch (to float rounding when padded)."""
    samples = []  # (pair index, masked tokens of the continuation, their count)
    for index, (_, continuation) in enumerate(pairs):
        if continuation:
            masked, counts = elbo_masks(len(continuation), mc_num, seed)
            samples += [(index, row, count) for row, count in zip(masked, counts.tolist())]
    totals = torch.zeros(len(pairs), dtype=torch.float64)
    config = lm.sampler_config(cfg_scale=cfg_scale)  # window_logits reads its mask id, cfg_scale and logit shift
    keep_supported = accepts_logits_to_keep(lm.module)
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        canvases = []
        for index, masked, _ in batch:
            context, continuation = pairs[index]
            canvases.append(list(context) + torch.where(masked, lm.mask_id, torch.tensor(continuation)).tolist())
        input_ids, attention_mask = pad_left(canvases, lm.pad_id)
        width = input_ids.shape[1]
        columns = max(len(pairs[index][1]) for index, _, _ in batch)  # the window: every continuation, right-aligned
        prompt_index = torch.zeros_like(input_ids, dtype=torch.bool)  # the context: masked in cfg's unconditional reading
        targets = torch.zeros((len(batch), columns), dtype=torch.long)
        weights = torch.zeros((len(batch), columns), dtype=torch.float64)
        for row, ((index, masked, count), canvas) in enumerate(zip(batch, canvases)):
            m = len(pairs[index][1])
            prompt_index[row, width - len(canvas) : width - m] = True
            targets[row, columns - m :] = torch.tensor(pairs[index][1])
            weights[row, columns - m :] = masked.double() * m / count
        device = lm.device
        logits = window_logits(
            lm.module,
            input_ids.to(device),
            None if attention_mask is None else attention_mask.to(device),
            prompt_index.to(device),
            config,
            width - columns,
            width,
            keep_supported,
        )
        log_probs = F.log_softmax(logits.float(), dim=-1).gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1)
        values = (log_probs.cpu().double() * weights).sum(dim=1)
        totals.index_add_(0, torch.tensor([index for index, _, _ in batch]), values)
    return (totals / mc_num).tolist()


def _positive_int(name: str, value) -> int:
    """lm-eval gives model_args as parsed values and --batch_size as text: either way, a positive integer."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        hint = " (batch_size=auto is not supported: give a number)" if str(value).startswith("auto") else ""
        raise MosaError(f"{name}={value!r} must be a positive integer{hint}")
    return value


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise MosaError(f"{name}={value!r} must be True or False")
    return value


MODEL_ARGS = [name for name in inspect.signature(MosaLM.__init__).parameters if name not in ("self", "unknown")]
