"""Loading base models, tokenizers and LoRA adapters, offline-first, the same way in every command.

Tokenizers saved by `iirg tiny-model` declare the generic class (`TokenizersBackend` in
transformers 5, `PreTrainedTokenizerFast` before); they are loaded with PreTrainedTokenizerFast
directly from tokenizer.json, because `AutoTokenizer` would pick the architecture's own tokenizer
class (Qwen2's for a Qwen2 config) and add tokens and rules the tiny BPE was not trained with.
`padding_side` is not saved by `save_pretrained`, so it is set on every load: left for generation
(prompts end where the answer starts), right for training.

Semantic-ID tokens (data written with `iirg data --item-repr sid`): `add_sid_tokens` adds every code
token the tokenizer lacks (`<a_0>`, ..., one token per level and code, as LC-Rec does) as ordinary
added tokens (not special: decoding keeps them), `fit_embeddings` grows the embedding matrix to the
new vocabulary (never shrinks it: Qwen2.5's matrix already has spare rows), and `trainable_token_targets`
names the rows peft trains beside LoRA (`LoraConfig(trainable_token_indices=...)`, peft >= 0.15):
the SID rows of the input embeddings, and of the output layer when it is not tied to them. The
adapter folder holds the tokenizer with the added tokens, so `load_adapter_model` grows the base
model the same way before loading the adapter, and evaluation sees the same token ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.errors import IirgError
from train.llm import prompts

# LoRA target modules per architecture (model_type): attention projections + MLP, the usual set for
# instruction tuning. Unknown architectures fall back to every Linear layer ("all-linear").
TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}


GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


class ModelLoadError(IirgError):
    """A base model, tokenizer or adapter could not be loaded."""


def target_modules_for(model_type: str, requested: str = "auto") -> list[str] | str:
    """LoRA target modules: the per-architecture default for "auto", else the comma list given."""
    if requested and requested != "auto":
        names = [m.strip() for m in requested.split(",") if m.strip()]
        return names[0] if names == ["all-linear"] else names
    return TARGET_MODULES.get(model_type, "all-linear")


def load_tokenizer(path: str, *, padding_side: str = "left"):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_path = Path(path) / "tokenizer_config.json"
    try:
        declared = json.loads(config_path.read_text()).get("tokenizer_class") if config_path.exists() else None
        if declared in GENERIC_TOKENIZER_CLASSES:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
        else:
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load the tokenizer of {path!r}: {e}") from e
    if tokenizer.pad_token_id is None:
        # Qwen base / Llama tokenizers often have no pad token: padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def add_sid_tokens(tokenizer, sids) -> tuple[list[str], int]:
    """Add the SID code tokens of `sids` that the tokenizer lacks.

    Returns every code token of the SIDs (level, then code order) and how many were new.
    """
    tokens = prompts.sid_tokens(sids)
    vocab = tokenizer.get_vocab()
    added = tokenizer.add_tokens([t for t in tokens if t not in vocab])
    return tokens, int(added)


def sid_token_ids(tokenizer, tokens: list[str]) -> list[int]:
    """Token id of each SID code token; each must be exactly one token.

    Raises:
        ModelLoadError: a code token is missing or split (the tokenizer is not the one trained with).
    """
    ids = []
    for token in tokens:
        encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ModelLoadError(f"the SID code {token} is {len(encoded)} tokens in this tokenizer, not one: "
                                 f"use the tokenizer saved with the SID adapter (or a tiny model built "
                                 f"with --item-repr sid)")
        ids.append(int(encoded[0]))
    return ids


def fit_embeddings(model, vocab_size: int) -> tuple[int, int]:
    """Grow the model's token embeddings (and output layer) to hold `vocab_size` tokens.

    Never shrinks: a matrix with spare rows (Qwen2.5: 151,936 rows for 151,665 tokens) is kept, so
    the logits keep the model's width. Returns the row count before and after.
    """
    before = model.get_input_embeddings().weight.shape[0]
    if vocab_size > before:
        # mean_resizing: new rows drawn around the mean of the old ones (transformers' default);
        # they are trained anyway (trainable_token_indices) and saved with the adapter.
        model.resize_token_embeddings(vocab_size)
    return before, model.get_input_embeddings().weight.shape[0]


def trainable_token_targets(model, token_ids: list[int]) -> list[int] | dict[str, list[int]]:
    """`LoraConfig.trainable_token_indices` for training only the rows of `token_ids`.

    Tied input/output embeddings (the tiny model, Qwen2.5-0.5B/1.5B): the list, which peft applies
    to the input embeddings and ties to the output layer. Untied (Qwen2.5-7B, Llama-3-8B): both
    layers by name, else the output rows of the new tokens would keep their initial values and
    the model could not learn to write them.
    """
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if outputs is None or outputs.weight is inputs.weight:
        return list(token_ids)
    names = {id(module): name for name, module in model.named_modules()}
    return {names[id(inputs)]: list(token_ids), names[id(outputs)]: list(token_ids)}


def load_base_model(path: str, *, dtype: str = "auto", device: str | None = None):
    """A causal LM from a local folder or hub id (downloads only if not cached and online)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
                   "float16": torch.float16}[dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load the model {path!r}: {e} (for offline use pass a local folder, "
                             f"e.g. one made by `iirg tiny-model` or a downloaded Hugging Face snapshot)") from e
    if device:
        model.to(device)
    return model


def is_full_model(folder: str | Path) -> bool:
    """Whether a trained folder holds a whole model (`method = "full"`) rather than a LoRA adapter."""
    return (Path(folder) / "config.json").exists() and not (Path(folder) / "adapter_config.json").exists()


def load_adapter_model(base_path: str, adapter_path: str | None, *, dtype: str = "auto",
                       device: str | None = None, vocab_size: int | None = None):
    """Base model with a LoRA adapter on top (or the bare base model when adapter_path is None).

    A folder from `iirg train --method full` holds the whole trained model (config.json, no
    adapter_config.json): that model is loaded and the base is not read.
    vocab_size: the length of the adapter's tokenizer when it added tokens (SID data); the base
    embeddings are grown to it first, as in training (the adapter holds the trained rows).
    """
    if adapter_path is not None and is_full_model(adapter_path):
        return load_base_model(adapter_path, dtype=dtype, device=device).eval()
    model = load_base_model(base_path, dtype=dtype, device=device)
    if vocab_size is not None:
        fit_embeddings(model, vocab_size)
    if adapter_path is None:
        return model.eval()
    from peft import PeftModel

    if not (Path(adapter_path) / "adapter_config.json").exists():
        raise ModelLoadError(f"{adapter_path} has neither adapter_config.json nor config.json: not a folder "
                             f"written by `iirg train`")
    model = PeftModel.from_pretrained(model, adapter_path)
    return model.eval()


def pick_device(requested: str | None = None) -> str:
    import torch

    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def add_training_dropout(model, p: float) -> list:
    """Dropout `p` on the input embeddings, the attention probabilities and every block's attention
    and MLP output (before each is added to the residual stream), in training mode only.

    SASRec's and GPT-2's regularisation, for decoders that have none (Llama and Qwen2 configs carry
    only an attention-probability dropout, 0 in the tiny model). Without it the tiny SID LM learns
    each training sequence as a whole (Office: training loss keeps falling while valid Recall@10
    drops from 8 to 16 epochs) instead of item-to-item transitions that carry over to new histories.
    Forward hooks on the (possibly peft-wrapped) modules: nothing is saved with the model, and an
    evaluated model (`model.eval()`, or a reloaded one) runs without dropout.
    Returns the hook handles: `handle.remove()` takes the output dropout off; the attention-probability
    dropout stays until each `layer.self_attn.attention_dropout` is set back (the saved config keeps 0).
    """
    import torch.nn.functional as F

    if not 0 <= p < 1:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    if p == 0:
        return []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", None), "layers", None)
    if layers is None or not all(hasattr(layer, "self_attn") and hasattr(layer, "mlp") for layer in layers):
        raise ModelLoadError(f"dropout needs decoder blocks with self_attn and mlp (Llama, Qwen2, Mistral "
                             f"layout); {type(base).__name__} has another layout")

    def drop_output(module, args, output):
        if isinstance(output, tuple):  # attention returns (output, weights)
            return (F.dropout(output[0], p, module.training), *output[1:])
        return F.dropout(output, p, module.training)

    handles = [model.get_input_embeddings().register_forward_hook(drop_output)]
    for layer in layers:
        if hasattr(layer.self_attn, "attention_dropout"):
            layer.self_attn.attention_dropout = p  # read at every forward, applied in training only
        handles.append(layer.self_attn.register_forward_hook(drop_output))
        handles.append(layer.mlp.register_forward_hook(drop_output))
    return handles
