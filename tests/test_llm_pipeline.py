"""LLM pipeline on real ml-100k: tiny model, masked + weighted loss, constrained decoding, LoRA training,
resume, adapter reload, and the end-to-end CLI path data -> train (NIP-only, IIRG) -> evaluate -> report.

Documented subset: instruction data and evaluation use the first 60 users of ml-100k in natural id
order ("1".."60"); relations come from the full training data (`iirg build`). The tiny model
(2 layers, hidden 64, BPE on the titles) is pre-trained for 40 steps and LoRA runs a handful of
steps, so the metrics are a pipeline check, not a result. One torch thread: other jobs share the CPU.
"""

from __future__ import annotations

import json

import pytest
import torch

import cli
from common.errors import ConfigError
from graph.export import load_export
from graph.rundir import RunPaths
from train.llm import prompts
from train.llm.data import DataConfig, item_texts, load_instruction_data, write_instruction_data
from train.llm.decode import DecodeConfig, ItemTrie, recommend
from train.llm.finetune import (TrainConfig, TrainError, accepts_logits_to_keep, answer_window, collate,
                                encode_samples, finetune, weighted_token_loss)
from train.llm.modeling import (add_training_dropout, is_full_model, load_adapter_model, load_base_model,
                                load_tokenizer)
from train.llm.tiny import TinyModelConfig, build_tiny_model

pytestmark = pytest.mark.slow
USERS = 60


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def run(ml100k_dir, tmp_path_factory) -> RunPaths:
    """A real `iirg build` of ml-100k (embedded store, semantic neighbours from MiniLM)."""
    root = tmp_path_factory.mktemp("llm") / "ml-100k"
    code = cli.main(["build", "--dataset", "ml-100k", "--data-dir", str(ml100k_dir.parent), "--run", str(root)])
    assert code == 0
    return RunPaths.of(root)


@pytest.fixture(scope="session")
def export(run):
    return load_export(run.export)


@pytest.fixture(scope="session")
def tiny(run, export):
    out = run.llm / "tiny"
    build_tiny_model(export.items["title"].tolist(), out,
                     TinyModelConfig(hidden_size=64, intermediate_size=172, num_heads=4, pretrain_steps=40,
                                     pretrain_batch_size=32))
    return out


@pytest.fixture(scope="session")
def data_dir(run, export):
    out = run.llm / "data"
    write_instruction_data(export, DataConfig(max_users=USERS, max_history=10), out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tiny):
    return load_tokenizer(str(tiny), padding_side="right")


def test_tiny_model_loads_offline_with_a_chat_template(tiny, tokenizer, export):
    summary = json.loads((tiny / "tiny_model.json").read_text())
    assert summary["pretrain_loss"]["last"] < summary["pretrain_loss"]["first"]
    assert tokenizer.chat_template and tokenizer.eos_token == "</s>"
    prompt = prompts.render_prompt(tokenizer, "Recommend.", '"Toy Story (1995)"')
    assert prompt.startswith("<s><|user|>\n") and prompt.endswith("<|assistant|>\n")
    model = load_base_model(str(tiny))
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    # every title survives the byte-level BPE exactly
    titles = export.items["title"].tolist()
    decoded = tokenizer.batch_decode(prompts.item_tokens(tokenizer, titles), skip_special_tokens=True)
    assert decoded == [prompts.format_item(t) for t in titles]


def test_loss_covers_answer_tokens_only(tiny, tokenizer, data_dir):
    data = load_instruction_data(data_dir)
    samples = data.train["nip"][:2] + data.train["collab"][:1]
    encoded, dropped = encode_samples(tokenizer, samples, 1024)
    assert dropped == 0
    answers = prompts.AnswerEncoder(tokenizer)
    for sample, features in zip(samples, encoded):
        features = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in features.items()}
        prompt = prompts.encode_prompts(tokenizer, [sample["instruction"]], [sample["input"]])[0]
        assert features["input_ids"][:len(prompt)] == prompt
        assert features["labels"][:len(prompt)] == [-100] * len(prompt)
        assert features["labels"][len(prompt):] == answers.encode(sample["output"])
        assert features["labels"][-1] == tokenizer.eos_token_id
    batch = collate(encoded, tokenizer.pad_token_id)
    model = load_base_model(str(tiny)).eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    total, count = weighted_token_loss(logits, batch["labels"], torch.ones(3))
    # by hand: -log p(answer token | everything before it), answer positions only
    log_probs = torch.log_softmax(logits.float(), -1)
    manual, n = 0.0, 0
    for row, features in enumerate(encoded):
        start = int((features["labels"] == -100).sum())  # the prompt is a prefix
        for t in range(start, len(features["input_ids"])):
            manual -= log_probs[row, t - 1, int(features["input_ids"][t])].item()
            n += 1
    assert count.item() == n
    assert total.item() == pytest.approx(manual, rel=1e-5)
    # had the prompt tokens been targets too, the loss would differ: the mask matters
    unmasked = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    total_all, count_all = weighted_token_loss(logits, unmasked, torch.ones(3))
    assert count_all > count and abs(total_all / count_all - total / count) > 1e-3


def test_left_padded_answer_window_gives_the_full_loss_and_gradient(tiny, tokenizer, data_dir):
    # The trainer left-pads and computes logits for the answer window only; the loss and every
    # gradient must equal the right-padded, all-positions computation.
    data = load_instruction_data(data_dir)
    samples = data.train["nip"][:2] + data.train["collab"][:1] + data.train["semantic"][:1]
    encoded = encode_samples(tokenizer, samples, 1024)[0]
    assert len({len(f["input_ids"]) for f in encoded}) > 1          # padding actually happens
    weights = torch.tensor([1.0, 0.5, 2.0, 1.0])
    model = load_base_model(str(tiny)).train()
    assert accepts_logits_to_keep(model)
    results = []
    for left in (False, True):
        batch = collate(encoded, tokenizer.pad_token_id, left=left)
        keep = answer_window(batch["labels"]) if left else 0
        assert not left or keep < batch["labels"].shape[1]           # a real saving on this batch
        model.zero_grad()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"], logits_to_keep=keep).logits
        total, count = weighted_token_loss(logits, batch["labels"][:, -logits.shape[1]:], weights)
        (total / count).backward()
        results.append((total.item(), count.item(), [p.grad.clone() for p in model.parameters()]))
    (right_total, right_count, right_grads), (left_total, left_count, left_grads) = results
    assert left_count == right_count and left_total == pytest.approx(right_total, rel=1e-5)
    for a, b in zip(right_grads, left_grads):
        assert torch.isfinite(b).all() and torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_task_weights_scale_each_sample_and_zero_removes_it(tiny, tokenizer, data_dir):
    data = load_instruction_data(data_dir)
    samples = [data.train["nip"][0], data.train["collab"][0], data.train["semantic"][0]]
    batch = collate(encode_samples(tokenizer, samples, 1024)[0], tokenizer.pad_token_id)
    model = load_base_model(str(tiny)).eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_sample = [weighted_token_loss(logits[i:i + 1], batch["labels"][i:i + 1], torch.ones(1))[0].item()
                  for i in range(3)]
    for weights in ([1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [2.0, 0.5, 0.0]):
        total, _ = weighted_token_loss(logits, batch["labels"], torch.tensor(weights))
        assert total.item() == pytest.approx(sum(w * l for w, l in zip(weights, per_sample)), rel=1e-5)
    full = weighted_token_loss(logits, batch["labels"], torch.ones(3))[0]
    without_collab = weighted_token_loss(logits, batch["labels"], torch.tensor([1.0, 0.0, 1.0]))[0]
    assert without_collab < full
    # the gradient of a weight-0 sample is exactly zero
    model.train()
    model.zero_grad()
    out = model(input_ids=batch["input_ids"][1:2], attention_mask=batch["attention_mask"][1:2]).logits
    weighted_token_loss(out, batch["labels"][1:2], torch.zeros(1))[0].backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.parameters())


def test_constrained_beam_search_returns_only_real_new_items(tiny, export):
    from evaluate.cases import eval_cases

    tokenizer = load_tokenizer(str(tiny))
    model = load_base_model(str(tiny)).eval()
    trie = ItemTrie.from_titles(tokenizer, export.items["item_id"].tolist(), export.items["title"].tolist())
    cases = eval_cases(export, "test").head(6)
    cases = [{"user_id": u, "history": list(h)} for u, h in zip(cases["user_id"], cases["history"])]
    texts = item_texts(export.items, "title")
    result = recommend(model, tokenizer, trie, texts, cases, 10,
                       DecodeConfig(num_beams=10, batch_size=4), progress=False)
    assert result.stats["invalid"] == 0 and result.stats["invalid_rate"] == 0.0
    assert result.stats["returned"] == 60 and result.stats["missing"] == 0
    recs = result.recommendations
    catalogue = set(export.items["item_id"])
    for case in cases:
        mine = recs[recs["user_id"] == case["user_id"]].sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, 11))
        assert mine["item_id"].nunique() == 10 and set(mine["item_id"]) <= catalogue
        assert not set(mine["item_id"]) & set(case["history"])
        assert mine["score"].is_monotonic_decreasing
    # the per-beam callback and the run without shared prefill find the same lists
    for variant in (DecodeConfig(num_beams=10, batch_size=4, constraint="callback"),
                    DecodeConfig(num_beams=10, batch_size=4, shared_prefill=False)):
        other = recommend(model, tokenizer, trie, texts, cases[:2], 10, variant, progress=False)
        head = recs[recs["user_id"].isin([c["user_id"] for c in cases[:2]])]
        assert other.recommendations[["user_id", "item_id", "rank"]].values.tolist() == \
            head[["user_id", "item_id", "rank"]].values.tolist()


@pytest.fixture(scope="session")
def resumed(tiny, data_dir, tmp_path_factory):
    """Train 2 steps (checkpoint at 2), then resume the same folder up to 4 steps."""
    out = tmp_path_factory.mktemp("adapters") / "resume"
    base = dict(model=str(tiny), data=str(data_dir), out=str(out), tasks=("nip",), batch_size=4,
                save_steps=2, eval_users=0, logging_steps=1, lr=5e-3, seed=7)
    first = finetune(TrainConfig(max_steps=2, **base))
    with pytest.raises(TrainError, match="--resume"):
        finetune(TrainConfig(max_steps=4, **base))
    second = finetune(TrainConfig(max_steps=4, resume=True, **base))
    return first, second


def test_resume_continues_from_the_saved_step(resumed):
    first, second = resumed
    assert first.metrics["global_step"] == 2 and first.steps_this_run == 2
    assert second.metrics["resumed_from_step"] == 2
    assert second.first_step_this_run == 3 and second.steps_this_run == 2
    assert second.metrics["global_step"] == 4
    assert (second.out / "checkpoints" / "checkpoint-4").is_dir()


def test_time_budget_stops_saves_and_evaluates_the_last_step_then_resumes(tiny, data_dir, tmp_path):
    """A budget that is over after the first step: training stops there, the step is checkpointed and
    evaluated (so model selection can pick it), and --resume continues the cut run to its end."""
    base = dict(model=str(tiny), data=str(data_dir), out=str(tmp_path / "cut"), tasks=("nip",), batch_size=4,
                save_steps=50, eval_users=5, eval_batch_size=5, logging_steps=1, lr=5e-3, seed=7)
    cut = finetune(TrainConfig(max_steps=50, time_budget_min=1e-6, **base))
    assert cut.metrics["stopped_by_time_budget"] and cut.metrics["global_step"] == 1
    assert [v["step"] for v in cut.metrics["valid"]] == [1] and cut.metrics["best_step"] == 1
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-1").is_dir()
    resumed = finetune(TrainConfig(max_steps=3, resume=True, **base))
    assert resumed.metrics["resumed_from_step"] == 1 and resumed.first_step_this_run == 2
    assert resumed.metrics["global_step"] == 3 and not resumed.metrics["stopped_by_time_budget"]


def test_lora_adapter_reloads_to_identical_outputs(resumed, tiny, tokenizer, data_dir):
    _, trained = resumed
    data = load_instruction_data(data_dir, ("nip",))
    batch = collate(encode_samples(tokenizer, data.train["nip"][:3], 1024)[0], tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    trained.model.eval()
    reloaded = load_adapter_model(str(tiny), str(trained.out))
    base = load_base_model(str(tiny)).eval()
    with torch.no_grad():
        before, after, plain = (m(**inputs).logits for m in (trained.model, reloaded, base))
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    assert (after - plain).abs().max() > 1e-3  # the adapter does change the model
    saved = json.loads((trained.out / "train_config.json").read_text())
    assert saved["config"]["lora_r"] == 16 and saved["target_modules"][:2] == ["q_proj", "k_proj"]
    assert (trained.out / "adapter_config.json").exists() and (trained.out / "loss_curve.png").exists()


def test_full_finetune_trains_every_weight_and_evaluates_from_its_folder(run, tiny, tokenizer, data_dir,
                                                                          tmp_path):
    """method = "full": no adapter, every weight moves, the folder holds the whole (best) model, which
    reloads to the same logits and `iirg evaluate --adapter <folder>` decodes with."""
    out = tmp_path / "full"
    trained = finetune(TrainConfig(model=str(tiny), data=str(data_dir), out=str(out), tasks=("nip",),
                                   method="full", max_steps=4, save_steps=2, eval_users=5, eval_batch_size=5,
                                   batch_size=4, logging_steps=1, lr=5e-3, seed=3))
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert not (out / "adapter_config.json").exists() and is_full_model(out)
    base = load_base_model(str(tiny))
    assert trained.metrics["trainable_parameters"] == sum(p.numel() for p in base.parameters())
    reloaded = load_adapter_model("/nonexistent-base", str(out))  # the base is not read
    moved = {name for name, w in reloaded.state_dict().items()
             if not torch.equal(w, base.state_dict()[name])}
    assert {n for n in base.state_dict() if "layers.0.mlp" in n} <= moved  # not only LoRA-reachable rows
    data = load_instruction_data(data_dir, ("nip",))
    batch = collate(encode_samples(tokenizer, data.train["nip"][:3], 1024)[0], tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    trained.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trained.model(**inputs).logits, rtol=0, atol=1e-5)
    assert json.loads((out / "train_config.json").read_text())["target_modules"] == "all weights"
    assert cli.main(["evaluate", "--run", str(run.root), "--adapter", str(out), "--name", "llm-full",
                     "--max-users", "10", "--num-beams", "10"]) == 0
    metrics = json.loads((run.model("llm-full") / "metrics_test.json").read_text())
    assert metrics["n_users"] == 10 and metrics["n_missing"] == 0


def test_training_dropout_acts_in_training_only_and_is_not_saved(tiny, tokenizer, data_dir, tmp_path):
    """`dropout`: hooks on the embeddings and every block's attention / MLP output (and the attention
    probabilities) make two training-mode passes differ; in eval mode the model equals the plain one,
    and a model trained with dropout is saved and reloaded without it."""
    data = load_instruction_data(data_dir, ("nip",))
    batch = collate(encode_samples(tokenizer, data.train["nip"][:3], 1024)[0], tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    model = load_base_model(str(tiny))
    with torch.no_grad():
        plain = model.eval()(**inputs).logits
        assert add_training_dropout(model, 0.0) == []
        handles = add_training_dropout(model, 0.3)
        assert len(handles) == 1 + 2 * model.config.num_hidden_layers
        assert all(layer.self_attn.attention_dropout == 0.3 for layer in model.model.layers)
        model.train()
        first, second = model(**inputs).logits, model(**inputs).logits
        assert (first - second).abs().max() > 1e-3
        torch.testing.assert_close(model.eval()(**inputs).logits, plain, rtol=0, atol=0)
        for handle in handles:
            handle.remove()
        for layer in model.model.layers:
            layer.self_attn.attention_dropout = 0.0
        model.train()  # Llama has no dropout of its own: without the hooks training mode is deterministic
        torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="dropout"):
        TrainConfig(model=str(tiny), data=str(data_dir), out=str(tmp_path / "x"), dropout=1.0)
    out = tmp_path / "dropout"
    finetune(TrainConfig(model=str(tiny), data=str(data_dir), out=str(out), tasks=("nip",), method="full",
                         dropout=0.2, max_steps=2, save_steps=2, eval_users=0, batch_size=4, lr=5e-3))
    reloaded = load_adapter_model("/nonexistent-base", str(out)).train()
    assert reloaded.config.attention_dropout == 0.0
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, reloaded(**inputs).logits, rtol=0, atol=0)


def test_end_to_end_nip_only_and_iirg_reach_the_report(run, tiny, data_dir, capsys):
    """iirg train (NIP-only, IIRG) -> iirg evaluate (both + base) -> metrics next to each other."""
    common = ["--run", str(run.root), "--model", str(tiny), "--max-steps", "6", "--save-steps", "3",
              "--eval-users", "8", "--batch-size", "4", "--logging-steps", "1", "--lr", "5e-3"]
    assert cli.main(["train", *common, "--tasks", "nip", "--name", "nip"]) == 0
    assert cli.main(["train", *common]) == 0  # all tasks: named iirg
    for name, tasks in (("nip", ["nip"]), ("iirg", ["nip", "collab", "semantic"])):
        out = run.llm / "adapters" / name
        metrics = json.loads((out / "metrics.json").read_text())
        assert list(metrics["samples"]) == tasks
        assert [v["step"] for v in metrics["valid"]] == [3, 6]
        assert all(v["invalid_rate"] == 0 for v in metrics["valid"])
        # the adapter left in the folder is the best valid checkpoint's
        from safetensors.torch import load_file
        best = load_file(out / "checkpoints" / f"checkpoint-{metrics['best_step']}" / "adapter_model.safetensors")
        final = load_file(out / "adapter_model.safetensors")
        assert best.keys() == final.keys() and all(torch.equal(best[k], final[k]) for k in best)
    evaluate = ["evaluate", "--run", str(run.root), "--max-users", "20", "--num-beams", "10"]
    assert cli.main([*evaluate, "--adapter", str(run.llm / "adapters" / "nip")]) == 0
    assert cli.main([*evaluate, "--adapter", str(run.llm / "adapters" / "iirg")]) == 0
    assert cli.main([*evaluate, "--no-adapter", "--base-model", str(tiny)]) == 0
    for model in ("llm-nip", "llm-iirg", "llm-base-tiny"):
        metrics = json.loads((run.model(model) / "metrics_test.json").read_text())
        assert metrics["n_users"] == 20 and metrics["n_missing"] == 0 and metrics["subset"]
        assert metrics["mean_list_length"] == 10
        assert set(metrics["segments"]) >= {"one_hop"} and "recall@10" in metrics["overall"]
        info = json.loads((run.model(model) / "info.json").read_text())
        assert info["splits"]["test"]["config"]["decode"]["invalid_rate"] == 0
    assert cli.main(["report", "--run", str(run.root), "--compare", "llm-iirg", "llm-nip",
                     "--n-boot", "50"]) == 0
    report = json.loads((run.report / "report_test.json").read_text())
    assert {"llm-nip", "llm-iirg", "llm-base-tiny"} <= set(report["models"])
    assert set(report["metrics"]["llm-iirg"]) and set(report["metrics"]["llm-nip"])
    assert report["decompositions"], "IIRG vs NIP-only gain decomposition is in the report"


def test_qwen2_architecture_with_plain_prompts_trains_and_decodes(export, data_dir, tmp_path):
    """The other prompt path (no chat template: Alpaca layout) and a Qwen2 model, as Qwen2.5 uses."""
    model_dir = tmp_path / "tiny-qwen2"
    build_tiny_model(export.items["title"].tolist(), model_dir,
                     TinyModelConfig(architecture="qwen2", chat_template=False, hidden_size=64,
                                     intermediate_size=172, pretrain_steps=5, pretrain_batch_size=16))
    tokenizer = load_tokenizer(str(model_dir))
    assert not tokenizer.chat_template and type(tokenizer).__name__ != "Qwen2Tokenizer"
    assert prompts.render_prompt(tokenizer, "Recommend.", "x").startswith("### Instruction:\nRecommend.")
    result = finetune(TrainConfig(model=str(model_dir), data=str(data_dir), out=str(tmp_path / "adapter"),
                                  tasks=("nip",), max_steps=2, save_steps=2, eval_users=4, batch_size=2))
    saved = json.loads((tmp_path / "adapter" / "train_config.json").read_text())
    assert saved["model_type"] == "qwen2" and "gate_proj" in saved["target_modules"]
    assert result.metrics["valid"][0]["invalid_rate"] == 0 and result.metrics["valid"][0]["users"] == 4
