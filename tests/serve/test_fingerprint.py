"""What `mosa serve` says it serves: the `mosa` field of its model card (the content fingerprints of
the model and the adapter, the dtype and the default sampler settings, hashed as `fingerprint`),
read through the official openai client, carried by every answer as `system_fingerprint`, and
different for another adapter or another checkpoint."""

import hashlib
import json

from openai import OpenAI

from mosa.models import load_model, merge_adapter
from mosa.models.build import save_model
from mosa.provenance import fingerprint_directory, fingerprint_model
from mosa.serve import served_provenance
from tests.conftest import tiny_llama
from tests.serve.conftest import SAMPLER, running


def test_the_fingerprint_names_the_model_and_adapter_served(tiny, tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    save_model(tiny, tmp_path / "model")
    save_model(tiny_llama(tokenizer, seed=1), tmp_path / "other-model")
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(load_model(tmp_path / "model").module, lora).save_pretrained(tmp_path / "adapter")

    identities = {}
    for label, model, adapter in [("plain", "model", None), ("adapter", "model", "adapter"), ("other", "other-model", None)]:
        lm = load_model(tmp_path / model, dtype="float32")
        if adapter is not None:
            lm = merge_adapter(lm, tmp_path / adapter)
        provenance = served_provenance(str(tmp_path / model), None if adapter is None else tmp_path / adapter)
        with running(lm, provenance=provenance, batch_wait=0.0) as (url, app):
            client = OpenAI(base_url=url, api_key="unused", max_retries=0)
            [card] = client.models.list().data  # the official client parses the list, the field aside
            assert card.id == "tiny" and card.owned_by == "mosa"
            identity = card.model_extra["mosa"]
            assert client.models.retrieve("tiny").model_extra["mosa"] == identity
            messages = [{"role": "user", "content": "how are you"}]
            assert client.chat.completions.create(model="tiny", messages=messages).system_fingerprint == identity["fingerprint"]
            chunks = list(client.chat.completions.create(model="tiny", messages=messages, stream=True))
            assert {chunk.system_fingerprint for chunk in chunks} == {identity["fingerprint"]}
            assert client.completions.create(model="tiny", prompt="how are you").system_fingerprint == identity["fingerprint"]
        identities[label] = identity

    for identity in identities.values():  # the sha256 of the rest, as canonical JSON
        rest = {key: value for key, value in identity.items() if key != "fingerprint"}
        canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert identity["fingerprint"] == hashlib.sha256(canonical.encode()).hexdigest()
        assert identity["dtype"] == "float32" and identity["sampler"]["steps"] == SAMPLER["steps"]
        assert "path" not in identity["model"] and "files" not in identity["model"]  # the server's own business

    plain, adapted, other = identities["plain"], identities["adapter"], identities["other"]
    assert plain["model"]["digest"] == adapted["model"]["digest"] == fingerprint_model(tmp_path / "model")["digest"]
    assert plain["adapter"] is None
    assert adapted["adapter"]["digest"] == fingerprint_directory(tmp_path / "adapter")["digest"]
    assert other["model"]["digest"] == fingerprint_model(tmp_path / "other-model")["digest"] != plain["model"]["digest"]
    assert len({plain["fingerprint"], adapted["fingerprint"], other["fingerprint"]}) == 3


def test_a_server_given_no_provenance_says_nothing_of_what_it_serves(served, client):
    assert "mosa" not in client.models.retrieve("tiny").model_extra
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}])
    assert reply.system_fingerprint is None
