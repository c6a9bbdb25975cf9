"""The LLM with items as semantic IDs: `iirg data --item-repr sid`, SID tokens in the tokenizer, training
only their embedding rows beside LoRA (peft trainable tokens), saving/reloading, and SID decoding.

Hand-made part: the 5-user export of tests/test_llm_data.py, with hand-made SIDs (item k has codes
(k % 3, k // 3, 0): `<a_1><b_0><c_0>` for item "2"), and a 1-layer model of width 32 built locally.
Title data must stay byte-identical to what `iirg data` wrote before `--item-repr` existed: the
files in tests/fixtures/llm_data_title/ were written by that code (commit 35cd7da).

Real part: ml-100k (`iirg build` + `iirg sid`), the first 40 users, a tiny SID model pre-trained for
a few steps: a pipeline check (invalid rate 0, items round-trip), not a result. One torch thread.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import cli
from common.errors import ConfigError
from graph.export import load_export
from graph.rundir import RunPaths
from test_llm_data import make_export
from train.llm import prompts
from train.llm.data import DataConfig, LlmDataError, load_instruction_data, write_instruction_data

torch = pytest.importorskip("torch", reason="the LLM needs the train extra (torch)")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "llm_data_title"
USERS = 40


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hand_sids(export) -> dict[str, str]:
    """Write export/sids.parquet (+ sid.json, manifest entry) as `iirg sid` would; item k: (k%3, k//3, 0)."""
    import numpy as np

    from train.sid import save_sids, sid_strings

    codes = np.array([[k % 3, k // 3, 0] for k in range(len(export.items))])
    frame = pd.DataFrame({"item_id": export.items["item_id"], "sid": sid_strings(codes), "sid_codes": list(codes)})
    stats = {"method": "hand", "levels": 2, "codes_per_level": 3, "seed": 0, "n_codes": 3, "collision_rate": 0.0,
             "dataset_checksum": export.manifest["dataset_checksum"]}
    save_sids(export.directory, frame, stats)
    return dict(zip(frame["item_id"], frame["sid"]))


@pytest.fixture
def sid_export(tmp_path):
    export = make_export(tmp_path / "export")
    sids = hand_sids(export)
    return load_export(tmp_path / "export"), sids


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,config", [
    ("default", DataConfig(weights=(1, 1, 0.5))),
    ("last", DataConfig(tasks=("nip", "collab"), nip_mode="last", max_history=2, collab_k=1, max_users=3, seed=3)),
])
def test_title_data_is_byte_identical_to_before(tmp_path, name, config):
    export = make_export(tmp_path / "export")
    out = tmp_path / name
    write_instruction_data(export, config, out)
    expected = FIXTURES / name
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in expected.iterdir())
    for path in expected.iterdir():
        if path.name != "data_config.json":
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    # data_config.json: the same record plus the new setting (its default); the build time differs
    old, new = json.loads((expected / "data_config.json").read_text()), json.loads((out / "data_config.json").read_text())
    assert new["config"].pop("item_repr") == "title"
    assert new["config"].pop("nip_span") == 10  # added with nip_mode="continuation"; unused by these modes
    for meta in (old, new):
        meta["export"].pop("created_at")
    assert new == old


def test_sid_data_writes_every_item_as_its_sid(sid_export, tmp_path):
    export, sids = sid_export
    config = DataConfig(item_repr="sid", tasks=("nip", "collab", "semantic", "title2sid", "sid2title"))
    meta = write_instruction_data(export, config, tmp_path / "data")
    data = load_instruction_data(tmp_path / "data")
    assert data.item_repr == "sid" and meta["config"]["item_repr"] == "sid"
    assert meta["format"]["item_template"] == "{sid}"
    assert meta["sids"]["sha256"] and meta["sids"]["dataset_checksum"] == export.manifest["dataset_checksum"]
    assert meta["sids"]["tokens"] == 3 + 3 + 1  # a_0..a_2, b_0..b_2, c_0
    assert dict(zip(data.items["item_id"], data.items["sid"])) == sids
    # every task, history and answers alike: item texts are SIDs only (no quote, no title)
    nip = {(s["user_id"], s["target_item_id"]): s for s in data.train["nip"]}
    u4 = nip[("u4", "8")]
    assert u4["input"] == "\n".join(sids[i] for i in ["5", "6", "7"]) and u4["output"] == sids["8"]
    collab = {s["anchor_item_id"]: s for s in data.train["collab"]}
    assert collab["2"]["input"] == sids["2"] and collab["2"]["output"] == "\n".join(sids[i] for i in ["3", "6", "1"])
    semantic = {s["anchor_item_id"]: s for s in data.train["semantic"]}
    assert semantic["1"]["output"] == f"{sids['2']}\n{sids['5']}"
    valid = {v["user_id"]: v for v in data.valid}
    assert valid["u4"]["output"] == sids["1"] and valid["u4"]["input"] == "\n".join(sids[i] for i in "5678")
    for task in ("nip", "collab", "semantic"):
        for sample in data.train[task]:
            assert '"' not in sample["input"] + sample["output"]
            assert all(line in sids.values() for line in (sample["input"] + "\n" + sample["output"]).split("\n"))
    # alignment: one sample per catalogue item, each way
    t2s = {s["item_id"]: s for s in data.train["title2sid"]}
    s2t = {s["item_id"]: s for s in data.train["sid2title"]}
    assert set(t2s) == set(s2t) == set(sids)
    assert t2s["3"]["input"] == '"Gamma "Quoted""' and t2s["3"]["output"] == sids["3"]
    assert s2t["3"]["input"] == sids["3"] and s2t["3"]["output"] == '"Gamma "Quoted""'
    assert data.item_texts == sids


def test_sid_text_parses_back_to_items():
    sids = {"1": "<a_1><b_0><c_0>", "2": "<a_1><b_12><c_0>"}
    to_id = {s: i for i, s in sids.items()}
    text = prompts.join_items([sids["2"], sids["1"], "<a_1><b_12>", '"Alpha"', "<a_1><b_0><c_0> x"])
    assert prompts.parse_items(text, to_id, "sid") == ["2", "1", None, None, None]
    assert prompts.sid_tokens(["<a_10><b_2>", "<a_2><b_2>"]) == ["<a_2>", "<a_10>", "<b_2>"]
    with pytest.raises(ValueError, match="not a SID"):
        prompts.sid_tokens(["<a_1> <b_2>"])


def test_sid_data_needs_the_runs_sids_of_this_build(tmp_path):
    export = make_export(tmp_path / "export")
    with pytest.raises(LlmDataError, match="run `iirg sid"):
        write_instruction_data(export, DataConfig(item_repr="sid"), tmp_path / "data")
    hand_sids(export)
    other = load_export(tmp_path / "export")
    other.manifest = {**other.manifest, "dataset_checksum": "another build"}
    with pytest.raises(LlmDataError, match="another dataset build"):
        write_instruction_data(other, DataConfig(item_repr="sid"), tmp_path / "data")
    assert not (tmp_path / "data").exists()
    with pytest.raises(ConfigError, match="--item-repr sid"):
        DataConfig(tasks=("nip", "title2sid"))
    with pytest.raises(ConfigError):
        DataConfig(item_repr="codes")


def test_cli_data_item_repr_flag(sid_export, tmp_path, capsys):
    export, sids = sid_export
    run = RunPaths.of(tmp_path / "run")
    shutil.copytree(export.directory, run.export)
    assert cli.main(["data", "--run", str(run.root), "--item-repr", "sid", "--tasks", "nip,title2sid"]) == 0
    assert "items as sid" in capsys.readouterr().out
    data = load_instruction_data(run.llm / "data")
    assert data.item_repr == "sid" and list(data.train) == ["nip", "title2sid"]


# --------------------------------------------------------------------------------------------
# Tokenizer and trainable tokens (a 1-layer model on the hand-made catalogue)
# --------------------------------------------------------------------------------------------
def tiny_model(export, out, sids=None, **overrides):
    from train.llm.tiny import TinyModelConfig, build_tiny_model

    settings = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_heads=2, num_layers=1,
                    pretrain_steps=0, item_repr="sid" if sids else "title")
    build_tiny_model(export.items["title"].tolist(), out, TinyModelConfig(**{**settings, **overrides}),
                     sids=[sids[i] for i in export.items["item_id"]] if sids else None)
    return out


def test_sid_tokens_round_trip_through_the_tokenizer(sid_export, tmp_path):
    from train.llm.modeling import add_sid_tokens, load_tokenizer, sid_token_ids

    export, sids = sid_export
    codes = prompts.sid_tokens(sids.values())
    built = load_tokenizer(str(tiny_model(export, tmp_path / "tiny-sid", sids)))   # tokens in the vocabulary
    plain = load_tokenizer(str(tiny_model(export, tmp_path / "tiny")))              # tokens added afterwards
    assert set(codes) <= set(built.get_vocab()) and not set(codes) & set(plain.get_vocab())
    before = len(plain)
    assert add_sid_tokens(plain, sids.values()) == (codes, len(codes)) and len(plain) == before + len(codes)
    assert add_sid_tokens(built, sids.values())[1] == 0  # nothing to add
    for tokenizer in (built, plain):
        ids = sid_token_ids(tokenizer, codes)
        assert len(set(ids)) == len(codes)                           # each code is one distinct token
        for sid in sids.values():
            encoded = tokenizer(sid, add_special_tokens=False)["input_ids"]
            assert tokenizer.convert_ids_to_tokens(encoded) == [f"<{a}_{c}>" for a, c in prompts.SID_TOKEN.findall(sid)]
            assert tokenizer.decode(encoded) == sid
        # inside a prompt, next to newlines and template tokens, codes stay whole
        history = prompts.join_items(sids.values())
        prompt = prompts.render_prompt(tokenizer, prompts.INSTRUCTIONS["nip"], history)
        encoded = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(encoded) == prompt
        assert sum(i in ids for i in encoded) == 3 * len(sids)
    # a saved tokenizer keeps the added tokens and their ids
    plain.save_pretrained(tmp_path / "saved")
    assert sid_token_ids(load_tokenizer(str(tmp_path / "saved")), codes) == sid_token_ids(plain, codes)


def effective_rows(model):
    """(input embedding rows, output layer rows) as the model uses them (peft wrappers applied)."""
    inputs = model.get_input_embeddings()
    rows = inputs(torch.arange(inputs.weight.shape[0] if hasattr(inputs, "weight") else
                               inputs.base_layer.weight.shape[0]))
    out = model.get_output_embeddings()
    width = rows.shape[1]
    return rows.detach().clone(), out(torch.eye(width)).T.detach().clone()


@pytest.mark.parametrize("vocabulary", ["built-in", "added"])
def test_one_step_trains_the_sid_rows_and_nothing_else_of_the_embeddings(sid_export, tmp_path, vocabulary):
    """built-in: a tiny model made with --item-repr sid (no resize); added: a title model, tokens added
    and the embeddings resized by `iirg train`. Either way LoRA + the SID rows train, the rest is frozen."""
    from train.llm.finetune import TrainConfig, finetune
    from train.llm.modeling import fit_embeddings, load_adapter_model, load_base_model, load_tokenizer

    export, sids = sid_export
    write_instruction_data(export, DataConfig(item_repr="sid", tasks=("nip", "collab", "semantic", "title2sid")),
                           tmp_path / "data")
    base_dir = tiny_model(export, tmp_path / "tiny", sids if vocabulary == "built-in" else None)
    base = load_base_model(str(base_dir)).eval()
    rows_before = base.get_input_embeddings().weight.shape[0]
    result = finetune(TrainConfig(model=str(base_dir), data=str(tmp_path / "data"), out=str(tmp_path / "adapter"),
                                  max_steps=1, save_steps=1, eval_users=0, batch_size=32, warmup_ratio=0.0,
                                  lr=1e-2, lora_r=4, lora_alpha=8, seed=0))
    record = json.loads((tmp_path / "adapter" / "train_config.json").read_text())["sid_tokens"]
    tokenizer = result.tokenizer
    ids = record["token_ids"]
    assert record["tokens"] == len(ids) == 7 and record["trainable_layers"] == "tied"
    assert record["added_to_tokenizer"] == (0 if vocabulary == "built-in" else 7)
    assert record["embedding_rows"] == [rows_before, len(tokenizer)]
    assert len(tokenizer) == rows_before + record["added_to_tokenizer"]

    model = result.model.eval()
    # trainable: LoRA matrices and the SID rows, nothing else
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    deltas = [p for n, p in trainable.items() if "trainable_tokens_delta" in n]
    assert len(deltas) == 1 and deltas[0].shape == (len(ids), 32)
    # the frozen matrix: the base's rows (grown by the resize for "added")
    reference = load_base_model(str(base_dir)).eval()
    fit_embeddings(reference, len(tokenizer))
    emb_after, out_after = effective_rows(model)
    original = reference.get_input_embeddings().weight.detach()
    other = torch.tensor([i for i in range(len(tokenizer)) if i not in ids])
    assert torch.equal(emb_after[other], original[other]), "rows of other tokens must not change"
    assert torch.equal(out_after[other], original[other]), "the tied output layer: the same"
    start = model.get_input_embeddings().token_adapter.trainable_tokens_original["default"]
    changed = (emb_after[ids] - start).abs().amax(dim=1)
    assert (changed > 0).all(), "every SID row received a gradient and moved"
    assert torch.equal(out_after[ids], emb_after[ids]), "input and output rows stay tied"

    # the saved adapter reloads to identical scores (the resized rows are re-drawn, then replaced)
    reloaded_tokenizer = load_tokenizer(str(tmp_path / "adapter"))
    assert len(reloaded_tokenizer) == len(tokenizer)
    reloaded = load_adapter_model(str(base_dir), str(tmp_path / "adapter"), vocab_size=len(reloaded_tokenizer))
    data = load_instruction_data(tmp_path / "data")
    text = prompts.render_prompt(tokenizer, data.train["nip"][0]["instruction"], data.train["nip"][0]["input"])
    batch = reloaded_tokenizer([text], return_tensors="pt", add_special_tokens=False)
    assert batch["input_ids"].tolist() == tokenizer([text], return_tensors="pt", add_special_tokens=False)["input_ids"].tolist()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, rtol=0, atol=1e-6)
        assert (reloaded(**batch).logits - base_logits(base_dir, batch, len(tokenizer))).abs().max() > 1e-4
    saved = set(__import__("safetensors.torch", fromlist=["load_file"]).load_file(
        tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any("trainable_tokens_delta" in k for k in saved)
    assert not any(k.endswith("embed_tokens.weight") or k.endswith("base_layer.weight") for k in saved), \
        "no copy of the whole embedding matrix in the adapter"


def base_logits(base_dir, batch, vocab_size):
    from train.llm.modeling import load_adapter_model

    with torch.no_grad():
        return load_adapter_model(str(base_dir), None, vocab_size=vocab_size)(**batch).logits


# --------------------------------------------------------------------------------------------
# Real ml-100k: SID decoding and the CLI path
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(ml100k_dir, tmp_path_factory) -> RunPaths:
    root = tmp_path_factory.mktemp("sid-lm") / "ml-100k"
    assert cli.main(["build", "--dataset", "ml-100k", "--data-dir", str(ml100k_dir.parent), "--run", str(root),
                     "--no-progress"]) == 0
    assert cli.main(["sid", "--run", str(root), "--no-progress"]) == 0
    return RunPaths.of(root)


@pytest.fixture(scope="module")
def tiny_sid(run):
    out = run.llm / "tiny-sid"
    assert cli.main(["tiny-model", "--run", str(run.root), "--out", str(out), "--item-repr", "sid",
                     "--hidden-size", "64", "--intermediate-size", "172", "--pretrain-steps", "30",
                     "--pretrain-batch-size", "32", "--threads", "1"]) == 0
    return out


def test_decoded_sids_are_always_catalogue_items(run, tiny_sid):
    from evaluate.cases import eval_cases
    from train.llm.data import item_texts, load_item_sids
    from train.llm.decode import DecodeConfig, ItemTrie, recommend
    from train.llm.modeling import load_base_model, load_tokenizer

    export = load_export(run.export)
    summary = json.loads((tiny_sid / "tiny_model.json").read_text())
    assert summary["item_repr"] == "sid" and summary["sid_tokens"] > 64
    assert summary["item_tokens"] == {"mean": 5.0, "max": 5}  # 4 codes + EOS for every item
    sids, _ = load_item_sids(export)
    texts = item_texts(export.items, "sid", sids)
    tokenizer = load_tokenizer(str(tiny_sid))
    model = load_base_model(str(tiny_sid)).eval()
    trie = ItemTrie.from_texts(tokenizer, list(texts), list(texts.values()))
    assert trie.max_depth == 5 and len(trie.item_ids) == len(export.items)
    cases = eval_cases(export, "test").head(8)
    cases = [{"user_id": u, "history": list(h)} for u, h in zip(cases["user_id"], cases["history"])]
    result = recommend(model, tokenizer, trie, texts, cases, 10, DecodeConfig(num_beams=10, batch_size=4),
                       progress=False)
    assert result.stats["invalid"] == 0 and result.stats["returned"] == 80 and result.stats["missing"] == 0
    recs = result.recommendations
    assert set(recs["item_id"]) <= set(export.items["item_id"])
    for case in cases:
        mine = recs[recs["user_id"] == case["user_id"]]
        assert mine["rank"].tolist() == list(range(1, 11)) and not set(mine["item_id"]) & set(case["history"])
    # the text of every trie path parses back to its item
    to_id = {s: i for i, s in sids.items()}
    decoded = tokenizer.batch_decode([seq[:-1] for seq in trie.sequences])
    assert [prompts.parse_items(t, to_id, "sid")[0] for t in decoded] == trie.item_ids


def test_cli_sid_data_train_evaluate_on_ml100k(run, tiny_sid):
    """iirg data --item-repr sid -> iirg train (tokens already in the tiny vocabulary) -> iirg evaluate."""
    assert cli.main(["data", "--run", str(run.root), "--item-repr", "sid", "--max-users", str(USERS),
                     "--max-history", "10", "--tasks", "nip,collab,semantic,title2sid"]) == 0
    assert cli.main(["train", "--run", str(run.root), "--model", str(tiny_sid), "--max-steps", "4",
                     "--save-steps", "2", "--eval-users", "8", "--batch-size", "4", "--lr", "5e-3",
                     "--threads", "1", "--name", "sid-iirg"]) == 0
    adapter = run.llm / "adapters" / "sid-iirg"
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert [v["step"] for v in metrics["valid"]] == [2, 4] and all(v["invalid_rate"] == 0 for v in metrics["valid"])
    record = json.loads((adapter / "train_config.json").read_text())
    assert record["sid_tokens"]["added_to_tokenizer"] == 0 and record["data_config"]["config"]["item_repr"] == "sid"
    # the adapter left in the folder is the best valid checkpoint's, SID rows included
    from safetensors.torch import load_file
    best = load_file(adapter / "checkpoints" / f"checkpoint-{metrics['best_step']}" / "adapter_model.safetensors")
    final = load_file(adapter / "adapter_model.safetensors")
    assert any("trainable_tokens_delta" in k for k in final)
    assert set(final) <= set(best) and all(torch.equal(best[k], final[k]) for k in final)
    assert cli.main(["evaluate", "--run", str(run.root), "--adapter", str(adapter), "--max-users", "20",
                     "--num-beams", "10", "--threads", "1", "--no-graph"]) == 0
    metrics = json.loads((run.model("llm-sid-iirg") / "metrics_test.json").read_text())
    assert metrics["n_users"] == 20 and metrics["n_missing"] == 0 and metrics["mean_list_length"] == 10
    info = json.loads((run.model("llm-sid-iirg") / "info.json").read_text())["splits"]["test"]["config"]
    assert info["item_repr"] == "sid" and info["decode"]["invalid_rate"] == 0
    assert info["sid_file"]["sha256"] == record["data_config"]["sids"]["sha256"]
    # the bare SID tiny model decodes SIDs too (its vocabulary has the codes)
    assert cli.main(["evaluate", "--run", str(run.root), "--no-adapter", "--base-model", str(tiny_sid),
                     "--item-repr", "sid", "--max-users", "5", "--num-beams", "10", "--threads", "1",
                     "--no-graph"]) == 0
    info = json.loads((run.model("llm-base-tiny-sid") / "info.json").read_text())["splits"]["test"]["config"]
    assert info["item_repr"] == "sid" and info["decode"]["invalid_rate"] == 0

    # an adapter trained on other SIDs (`iirg sid` ran again since) is refused, naming the fix
    from train.llm.evaluation import EvaluateConfig, EvaluateError, evaluate_llm

    stale = run.llm / "adapters" / "stale"
    shutil.copytree(adapter, stale, ignore=shutil.ignore_patterns("checkpoints"))
    saved = json.loads((stale / "train_config.json").read_text())
    saved["data_config"]["sids"]["sha256"] = "0" * 64
    (stale / "train_config.json").write_text(json.dumps(saved))
    with pytest.raises(EvaluateError, match="other semantic IDs"):
        evaluate_llm(run, EvaluateConfig(adapter=str(stale), max_users=2))
    with pytest.raises(EvaluateError, match="trained with items as sid"):
        evaluate_llm(run, EvaluateConfig(adapter=str(adapter), item_repr="title", max_users=2))


def test_untied_output_layer_trains_its_sid_rows_too():
    """Untied models (Qwen2.5-7B, Llama-3-8B): both layers are named, so the model can learn to write
    the new tokens; a tiny LlamaForCausalLM built from a config stands in for them."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from train.llm.modeling import fit_embeddings, trainable_token_targets

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False))
    assert fit_embeddings(model, 60) == (50, 60) and fit_embeddings(model, 55) == (60, 60)  # never shrinks
    new = list(range(50, 60))
    targets = trainable_token_targets(model, new)
    assert targets == {"model.embed_tokens": new, "lm_head": new}
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], trainable_token_indices=targets))
    before = effective_rows(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    ids = torch.randint(0, 60, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    after = effective_rows(model)
    for old, moved in zip(before, after):
        assert torch.equal(moved[:50], old[:50])
    assert ((after[1][50:] - before[1][50:]).abs().amax(dim=1) > 0).all(), "every new output row trains"
