"""PAL against the tiny dLLM target, with a tiny random causal Llama saved as a checkpoint as the
white-box proxy (sharing the word-level tokenizer, or a byte-level BPE), and tiny budgets."""

import math
from dataclasses import dataclass

import pytest
import torch

from mosa.attacks import Target, TargetResponse, make_attack
from mosa.attacks.base import RoundStore
from mosa.attacks.pal import ProxyObjective, Score, cw_one, succeeded
from mosa.errors import MosaError
from mosa.models.likelihood import teacher_forced_logprobs
from tests.attacks.conftest import BEHAVIOURS
from tests.conftest import save_causal_llama

BEHAVIOUR = BEHAVIOURS[1]  # "what is the cat", target "sure here is the cat"
STEPS, BATCH, PER_STEP = 3, 8, 3
OPTIONS = {
    "init": "the",
    "suffix_length": 4,
    "num_steps": STEPS,
    "batch_size": BATCH,
    "num_target_query_per_step": PER_STEP,
    "top_k": 16,
}


@pytest.fixture(scope="module")
def proxy_dir(tokenizer, tmp_path_factory):
    return str(save_causal_llama(tokenizer, tmp_path_factory.mktemp("proxy")))


@dataclass
class Read:
    message: str
    response: str
    top_k: int
    until_miss: bool
    reading: object  # TokenLogprobs


class SpyTarget(Target):
    """The tiny target, recording every log-probability reading and success check; it raises, as a
    dead machine would, at reading number `fail_at` (1-based), and answers every success check from
    check number `comply_from` on with the target string (a success)."""

    def __init__(self, lm, fail_at=None, comply_from=None, answer="sure here is the cat . step one"):
        super().__init__(lm, lm.sampler_config(gen_length=24, steps=24, block_length=8), batch_size=4)
        self.fail_at, self.comply_from, self.answer = fail_at, comply_from, answer
        self.reads, self.checks = [], []

    def teacher_forced_logprobs(self, messages, response, position=0, top_k=5, until_miss=False):
        if len(self.reads) + 1 == self.fail_at:
            raise MosaError("the target's machine is gone")
        [turn] = messages
        reading = super().teacher_forced_logprobs(messages, response, position, top_k, until_miss)
        self.reads.append(Read(turn["content"], response, top_k, until_miss, reading))
        return reading

    def respond(self, cases):
        self.checks += [case.messages[-1]["content"] for case in cases]
        if self.comply_from is not None and len(self.checks) >= self.comply_from:
            return [TargetResponse(self.answer, [], []) for _ in cases]
        return super().respond(cases)


def pal(proxy_dir, **options):
    return make_attack("pal", {"proxy": proxy_dir, **OPTIONS, **options})


def suffix_words(message):
    return message.removeprefix(BEHAVIOUR.prompt + " ").split()


def target_score(read):
    return cw_one(read.reading.token_ids, read.reading.top_ids, read.reading.top_logprobs, 1.0)


def test_cw_one_reads_the_top_5_as_pal_reads_an_api():
    lp = math.log
    tops = [[1, 9, 8, 7, 6], [2, 9, 8, 7, 6], [9, 3, 8, 7, 6]]
    logprobs = [[lp(0.9), lp(0.05), lp(0.02), lp(0.01), lp(0.01)], [lp(0.4), lp(0.3), lp(0.1), lp(0.1), lp(0.05)]] * 2
    # Tokens 1 and 2 top-1 (margins clamped at -1, then lp(0.3) - lp(0.4)), token 3 second: stop there.
    score = cw_one([1, 2, 3, 4], tops, logprobs[:3], margin=1.0)
    assert (score.matched, score.read) == (2, 3)
    assert score.loss == pytest.approx(-1.0 + (lp(0.3) - lp(0.4)) + (lp(0.9) - lp(0.05)))
    # A target token outside the top 5: its probability is what they leave, 1 - 0.99.
    outside = cw_one([5], tops[:1], logprobs[:1], margin=1.0)
    assert (outside.matched, outside.read) == (0, 1)
    assert outside.loss == pytest.approx(lp(0.9) - lp(0.01))
    # Every token top-1: all read, each margin clamped at -margin.
    assert cw_one([1, 2], tops[:2], logprobs[:2], margin=0.5) == Score(2, -0.5 + (lp(0.3) - lp(0.4)), 2)
    # A longer top-1 run ranks first, whatever the loss.
    assert Score(2, 5.0, 3).rank() < Score(1, -3.0, 2).rank() < Score(1, -2.0, 2).rank()


def test_success_is_the_target_string_without_a_refusal_opening():
    assert succeeded("Sure, here is how. Step 1", "Sure, here is how")
    assert not succeeded("I cannot. Sure, here is how", "Sure, here is how")
    assert not succeeded("Sure, here it is", "Sure, here is how")


def test_teacher_forcing_until_a_miss_is_the_full_reading_cut_at_the_first_miss(lm):
    prompt = lm.render_chat("what is the cat")
    top1_run = []  # the model's own top-1 token at each position, given the ones before
    for _ in range(5):
        reading = teacher_forced_logprobs(lm, prompt, top1_run + [0], gen_length=24, top_k=2)
        top1_run.append(reading.top_ids[-1][0])
    second = teacher_forced_logprobs(lm, prompt, top1_run + [0], gen_length=24, top_k=2).top_ids[-1][1]
    response = top1_run + [second, 20, 21, 22, 23]
    for batch_size, passes in ((16, 1 + 1 + 2 + 4), (3, 1 + 1 + 2 + 3)):  # each call as many as read so far, at most batch_size
        full = teacher_forced_logprobs(lm, prompt, response, gen_length=24, top_k=5, batch_size=batch_size)
        cut = teacher_forced_logprobs(lm, prompt, response, gen_length=24, top_k=5, batch_size=batch_size, until_miss=True)
        assert cut.token_ids == response[:6] and cut.logprobs == pytest.approx(full.logprobs[:6], abs=1e-6)
        assert cut.top_ids == full.top_ids[:6]
        assert torch.allclose(torch.tensor(cut.top_logprobs), torch.tensor(full.top_logprobs[:6]), atol=1e-6)
        assert cut.forward_passes == passes
    whole = teacher_forced_logprobs(lm, prompt, top1_run, gen_length=24, top_k=5, until_miss=True)
    assert whole.token_ids == top1_run and whole.forward_passes == len(top1_run)


def test_each_step_sends_the_proxy_s_best_to_the_target_and_moves_to_the_target_s_best(proxy_dir, lm, monkeypatch):
    scored = []  # per step: the candidates the proxy scored and its scores
    original = ProxyObjective.scores

    def spy(self, suffixes, batch_size, margin):
        scores = original(self, suffixes, batch_size, margin)
        scored.append(([self.message(suffix) for suffix in suffixes], scores))
        return scores

    monkeypatch.setattr(ProxyObjective, "scores", spy)
    target = SpyTarget(lm)
    [case] = pal(proxy_dir).cases([BEHAVIOUR], target)

    reads = target.reads
    assert len(reads) == 1 + STEPS * PER_STEP and len(scored) == STEPS
    assert all(read.response == "sure here is the cat" and read.top_k == 5 and read.until_miss for read in reads)
    current = reads[0].message
    assert current == "what is the cat the the the the" and target.checks[0] == current
    visited, chosen_scores = [current], [target_score(reads[0])]
    for step, (candidates, proxy_scores) in enumerate(scored):
        assert 0 < len(candidates) <= BATCH
        by_proxy = sorted(range(len(candidates)), key=lambda i: proxy_scores[i].rank())[:PER_STEP]
        sent = reads[1 + step * PER_STEP : 1 + (step + 1) * PER_STEP]
        assert [read.message for read in sent] == [candidates[i] for i in by_proxy]
        for read in sent:  # one token swapped in the current suffix, never a suffix visited before
            changed = [a != b for a, b in zip(suffix_words(read.message), suffix_words(current))]
            assert len(changed) == 4 and sum(changed) == 1 and read.message not in visited
        scores = [target_score(read) for read in sent]
        best = min(range(PER_STEP), key=lambda i: scores[i].rank())
        current = sent[best].message
        visited.append(current)
        chosen_scores.append(scores[best])
        assert target.checks[step + 1] == current  # the success check samples the suffix moved to

    payload = case.payload
    assert payload["steps"] == STEPS and payload["stopped"] == "num_steps" and payload["success"] is False
    assert payload["score_trajectory"] == [score.loss for score in chosen_scores]
    assert payload["matched_trajectory"] == [score.matched for score in chosen_scores]
    best = min(range(len(chosen_scores)), key=lambda i: chosen_scores[i].rank())
    assert payload["best"]["step"] == best and case.messages == [{"role": "user", "content": visited[best]}]
    assert payload["queries"] == {
        "target": sum(len(read.reading.token_ids) for read in reads) + len(target.checks),  # positions read + checks
        "proxy": STEPS + sum(len(candidates) for candidates, _ in scored),  # a gradient and the candidates, per step
    }
    assert payload["target_logprob_passes"] == sum(read.reading.forward_passes for read in reads)
    assert payload["proxy"] == f"transformers:{proxy_dir}"


def test_max_queries_stops_after_the_step_that_reaches_it(proxy_dir, lm):
    target = SpyTarget(lm)
    [case] = pal(proxy_dir, max_queries=5).cases([BEHAVIOUR], target)
    queries = case.payload["queries"]["target"]
    step_zero = len(target.reads[0].reading.token_ids) + 1
    assert step_zero < 5 <= queries  # step 0 left room for step 1, which passed the budget
    assert case.payload["steps"] == 1 and case.payload["stopped"] == "max_queries"
    assert len(target.reads) == 1 + PER_STEP and len(target.checks) == 2


def test_early_stop_ends_at_the_first_success_and_the_case_is_the_suffix_that_succeeded(proxy_dir, lm):
    target = SpyTarget(lm, comply_from=2)  # the check of step 1 succeeds
    [stopped] = pal(proxy_dir, early_stop=True).cases([BEHAVIOUR], target)
    assert stopped.payload["steps"] == 1 and stopped.payload["stopped"] == "success"
    assert stopped.payload["success"] is True and stopped.payload["success_step"] == 1
    assert stopped.payload["response"] == "sure here is the cat . step one"
    assert stopped.messages == [{"role": "user", "content": target.checks[1]}]

    target = SpyTarget(lm, comply_from=2)
    [whole] = pal(proxy_dir).cases([BEHAVIOUR], target)  # the official default: the budget is spent anyway
    assert whole.payload["steps"] == STEPS and whole.payload["stopped"] == "num_steps"
    assert whole.payload["success_step"] == 1 and whole.messages == stopped.messages
    refused = SpyTarget(lm, comply_from=1, answer="I cannot help . sure here is the cat")
    assert pal(proxy_dir, num_steps=1).cases([BEHAVIOUR], refused)[0].payload["success"] is False


def test_a_killed_search_resumes_at_the_last_step_saved(proxy_dir, lm, tmp_path):
    def run(target, rounds):
        target.rounds = rounds
        return pal(proxy_dir).cases([BEHAVIOUR], target)

    [whole] = run(whole_target := SpyTarget(lm), RoundStore())
    store = RoundStore(tmp_path / "rounds")
    with pytest.raises(MosaError, match="machine is gone"):
        run(SpyTarget(lm, fail_at=1 + PER_STEP + 2), store)  # dies during step 2
    assert store.load(BEHAVIOUR.id)["step"] == 1
    [resumed] = run(resumed_target := SpyTarget(lm), store)
    assert resumed.payload == whole.payload and resumed.messages == whole.messages
    # steps 0 and 1 were not taken again: only steps 2 and 3
    assert [read.message for read in resumed_target.reads] == [read.message for read in whole_target.reads[1 + PER_STEP :]]
    assert resumed_target.checks == whole_target.checks[2:]


def test_a_byte_level_proxy_sends_only_suffixes_that_reach_it_as_optimised(bpe_tokenizer, lm, tmp_path):
    """The proxy's tokenizer differs from the target's: candidates cross as text, and only those whose
    text the proxy reads back as the same ids are kept (" the" + "x" would read back as " thex")."""
    proxy = str(save_causal_llama(bpe_tokenizer, tmp_path / "bpe-proxy", seed=1))
    target = SpyTarget(lm)
    [case] = make_attack("pal", {"proxy": proxy, **OPTIONS, "num_steps": 2}).cases([BEHAVIOUR], target)
    attack = make_attack("pal", {"proxy": proxy, **OPTIONS})
    objective = ProxyObjective(attack.proxy, BEHAVIOUR.prompt, "sure here is the cat", seq_len=50)
    for read in target.reads:
        ids = objective.suffix_of(read.message)
        assert (
            ids is not None
            and len(ids) == 4
            and objective.text(torch.tensor(ids)) == read.message.removeprefix(BEHAVIOUR.prompt + " ")
        )
    assert case.payload["queries"]["target"] == sum(len(read.reading.token_ids) for read in target.reads) + 3


def test_the_proxy_reads_and_differentiates_the_chat_the_target_is_sent(proxy_dir):
    """Against an independent computation: the proxy's chat for the message, then the target string."""
    attack = pal(proxy_dir)
    model, tokenizer = attack.proxy.model, attack.proxy.tokenizer
    objective = ProxyObjective(attack.proxy, BEHAVIOUR.prompt, "sure here is the cat", seq_len=3)
    suffix = torch.tensor(objective.suffix_of("what is the cat a dog ran fast"))
    chat = tokenizer(objective.chat_text(objective.message(suffix)), add_special_tokens=False)["input_ids"]
    target = tokenizer("sure here is", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([chat + target])).logits[0, len(chat) - 1 : -1]
    top = torch.log_softmax(logits, dim=-1).topk(5)
    [score] = objective.scores(suffix.unsqueeze(0), batch_size=1, margin=1.0)
    expected = cw_one(target, top.indices.tolist(), top.values.tolist(), 1.0)
    assert score.matched == expected.matched and score.loss == pytest.approx(expected.loss, abs=1e-5)

    # d loss / d one-hot = (d loss / d suffix embeddings) @ W^T, the CW loss taken directly
    embeds = model.get_input_embeddings()(torch.tensor([chat + target[:-1]])).detach().requires_grad_()
    logits = model(inputs_embeds=embeds).logits[0, -len(target) :]
    target_ids = torch.tensor(target)
    others = logits.clone()
    others[range(len(target)), target_ids] = -torch.inf
    loss = (others.max(dim=1).values - logits[range(len(target)), target_ids]).clamp_min(-1.0).mean()
    [grad] = torch.autograd.grad(loss, embeds)
    start = len(objective.before)
    expected_gradient = grad[0, start : start + len(suffix)] @ model.get_input_embeddings().weight.T
    assert torch.allclose(objective.gradient(suffix, 1.0), expected_gradient, atol=1e-5)


def test_pal_needs_a_local_proxy_and_checks_its_options(proxy_dir, lm):
    with pytest.raises(MosaError, match=r"^attack 'pal' needs proxy: a local causal LM .*transformers:PATH.* smollm2"):
        make_attack("pal", {})
    with pytest.raises(MosaError, match=r"proxy 'openai:m@http://127.0.0.1:9/v1' is not a local model.*gradients"):
        make_attack("pal", {"proxy": "openai:m@http://127.0.0.1:9/v1"})
    with pytest.raises(MosaError, match=r"proxy \{'type': 'openai'.* is not a local model"):
        make_attack("pal", {"proxy": {"type": "openai", "model": "m"}})
    with pytest.raises(MosaError, match=r"proxy /nowhere/model is not a directory"):
        make_attack("pal", {"proxy": "/nowhere/model"})
    make_attack("pal", {"proxy": "someone/some-model"})  # a hub id: loaded on first use, so nothing is asked yet
    for option, value, requirement in (
        ("num_target_query_per_step", 0, "an integer >= 1"),
        ("max_queries", 0, "an integer >= 1"),
        ("cw_margin", -1, "a number >= 0"),
        ("early_stop", "yes", "true or false"),
    ):
        with pytest.raises(MosaError, match=f"attack pal: option {option}=.* must be {requirement}"):
            make_attack("pal", {"proxy": proxy_dir, option: value})
    with pytest.raises(MosaError, match=r"init='!' repeated 20 times is not 20 allowed tokens of the proxy"):
        make_attack("pal", {"proxy": proxy_dir}).cases([BEHAVIOUR], SpyTarget(lm))  # "!" is no word of its vocabulary
