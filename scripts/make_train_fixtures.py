#!/usr/bin/env python3
"""Generate golden TRAINING fixtures for the streamllm C++ trainer tests.

Run by hand (CI needs no Python):

    /work/venv/bin/python scripts/make_train_fixtures.py                   # all cases
    /work/venv/bin/python scripts/make_train_fixtures.py llama_zero_sink   # a subset

Pinned package versions: scripts/requirements-fixtures.txt.
Output: tests/fixtures/train/<case>/ (conventions: tests/fixtures/train/README.md).

For every case (a tiny random GPTNeoXForCausalLM or LlamaForCausalLM with one of four
attention-sink variants) the script

1. builds the model with transformers' own classes, overwrites every parameter with seeded random
   values, stores them as float32 and writes ``config.json`` + ``model.safetensors`` with
   ``save_pretrained`` (so the tensor names are exactly transformers' on-disk names, e.g.
   ``embed_out.weight`` for GPT-NeoX, no ``lm_head.weight`` for a tied Llama);
2. switches a copy of the model to float64 and computes, through HF's modules, the loss and the
   gradient of every parameter for one batch (``batch.json``, ``grads.safetensors``);
3. runs 10 AdamW steps (2 micro-batches of gradient accumulation, global-norm clipping, warm-up +
   cosine learning rate) from the same weights and records the losses, the pre-clip gradient norms
   and the final weights (``run.json``, ``final.safetensors``).

The sink variants are implemented in ONE attention function registered with
``transformers.AttentionInterface`` under the name "streamllm_sink". Before anything is written
the script asserts (float64, every case):

- with the vanilla rule, that function reproduces HF's ``eager`` attention (with its float32
  softmax up-cast lifted to float64) and HF's ``sdpa`` attention: logits and every gradient within
  1e-12. Unmodified ``eager`` (which rounds the probabilities to float32) agrees within 1e-5;
- zero_sink / sink_logit equal gpt-oss's ``eager_attention_forward`` (transformers' own
  implementation of a per-head sink logit; zero_sink = a sink logit fixed at 0): within 1e-12;
- central finite differences agree with a few autograd gradient entries;
- the float64 forward agrees with the unmodified float32 HF model (vanilla rule) within 1e-4;
- the weights transformers reads back from model.safetensors are bit-identical to the ones used;
- a float32 replay (HF's float32 modules + the same attention function) of the batch and of the
  AdamW run agrees with the float64 goldens (loss, gradients < 1e-5; step losses < 1e-5; final
  weights < 2e-5 except the entries whose gradient is analytically zero, see
  ``analytic_zero_grad_entries``). These numbers are printed: they size the C++ tolerances.

Model sizes are smaller than a "hidden 64" model on purpose: three weight files per case, eight
cases, and the whole directory must stay well under 2 MB (about 1.5 MB now).

HF float64 caveats handled here (transformers 5.24): the rotary embedding computes its angles and
cos/sin in float32 and ``LlamaRMSNorm`` up-casts to float32, whatever the model dtype. For a true
float64 reference the script replaces, per module instance, the rotary embedding's ``forward`` with
a float64 one (same formula, inv_freq = theta^(-2i/rot) in float64) and the RMSNorm ``forward``
with the same formula without the float32 cast. Both are checked against the originals in float32.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AttentionInterface,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)
from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward as gpt_oss_eager

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "fixtures" / "train"

# --------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------

N_TEXT = 61  # text vocabulary; sink tokens are the ids N_TEXT .. N_TEXT+k-1 (the last k ids)
L = 12  # text positions per sample
B = 2  # samples per micro-batch
TEXT_SEED = 4242
EMB_STD = 0.5  # embedding init std (also the tied head); other matrices N(0, 1/fan_in)

HYPER = {
    "text_len": L,
    "micro_batch": B,
    "grad_accum": 2,
    "steps": 10,
    "lr_max": 1e-2,
    "lr_min": 0.1 * 1e-2,
    "warmup_steps": 3,
    "total_steps": 10,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "clip_norm": 1.0,
    "clip_eps": 1e-6,
}

# name: (family, sink variant, k sink tokens, tie_word_embeddings, seed)
CASES = {
    "gpt_neox_vanilla": ("gpt_neox", "vanilla", 0, False, 3001),
    "gpt_neox_learnable_sink": ("gpt_neox", "learnable_sink", 1, False, 3002),
    "gpt_neox_zero_sink": ("gpt_neox", "zero_sink", 0, False, 3003),
    "gpt_neox_sink_logit": ("gpt_neox", "sink_logit", 0, False, 3004),
    "llama_vanilla": ("llama", "vanilla", 0, False, 3005),
    "llama_learnable_sink": ("llama", "learnable_sink", 2, True, 3006),
    "llama_zero_sink": ("llama", "zero_sink", 0, False, 3007),
    "llama_sink_logit": ("llama", "sink_logit", 0, False, 3008),
}


def make_config(family: str, vocab: int, tie: bool, sink: str, k: int):
    if family == "gpt_neox":
        cfg = GPTNeoXConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,  # head_dim 16, 4 rotary dims
            hidden_act="gelu",
            rotary_pct=0.25,  # legacy names, converted by transformers to rope_parameters
            rotary_emb_base=10000,
            use_parallel_residual=True,
            layer_norm_eps=1e-5,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            attention_bias=True,
            attention_dropout=0.0,
            hidden_dropout=0.0,
        )
    else:
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,  # GQA, head_dim 4
            hidden_act="silu",
            tie_word_embeddings=tie,
            rope_theta=10000.0,
            rms_norm_eps=1e-5,
            max_position_embeddings=64,
            attention_bias=False,
            mlp_bias=False,
            attention_dropout=0.0,
        )
    cfg.streamllm_sink = sink
    cfg.streamllm_sink_tokens = k
    return cfg


def attn_modules(model):
    if isinstance(model, GPTNeoXForCausalLM):
        return [layer.attention for layer in model.gpt_neox.layers]
    return [layer.self_attn for layer in model.model.layers]


# --------------------------------------------------------------------------------------------
# The attention function (registered with transformers) and the references it is checked against
# --------------------------------------------------------------------------------------------

_FORCE_RULE: str | None = None  # set to "vanilla" for the eager-equivalence check


def _causal(T: int, S: int, device) -> torch.Tensor:
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def streamllm_sink_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """query [B, H, T, D], key/value [B, KV, S, D] -> (out [B, T, H, D], probs [B, H, T, S])."""
    assert dropout == 0.0
    # transformers builds no mask for a custom attention name; there is no padding here anyway.
    assert attention_mask is None
    Bq, H, T, D = query.shape
    KV, S = key.shape[1], key.shape[2]
    assert S == T and H % KV == 0
    key = key.repeat_interleave(H // KV, dim=1)  # query head h uses KV head h // (H/KV)
    value = value.repeat_interleave(H // KV, dim=1)
    s = torch.matmul(query, key.transpose(2, 3)) * scaling
    s = s.masked_fill(~_causal(T, S, s.device), float("-inf"))
    rule = _FORCE_RULE or module.config.streamllm_sink
    if rule in ("vanilla", "learnable_sink"):
        p = torch.softmax(s, dim=-1)
    else:
        if rule == "zero_sink":
            extra = torch.zeros(1, H, 1, 1, dtype=s.dtype, device=s.device)
        elif rule == "sink_logit":
            extra = module.sinks.reshape(1, H, 1, 1)
        else:
            raise ValueError(rule)
        extra = extra.expand(Bq, H, T, 1)
        m = torch.maximum(s.amax(dim=-1, keepdim=True), extra)  # m = max(b, max_j s_j)
        e = torch.exp(s - m)
        p = e / (torch.exp(extra - m) + e.sum(dim=-1, keepdim=True))
    out = torch.matmul(p, value).transpose(1, 2).contiguous()
    return out, p


def gpt_oss_reference(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' gpt-oss eager attention (sink logit per head); zero_sink = sink logit 0."""
    assert attention_mask is None and dropout == 0.0
    H, KV, T = query.shape[1], key.shape[1], query.shape[2]
    rule = module.config.streamllm_sink
    sinks = module.sinks if rule == "sink_logit" else torch.zeros(H, dtype=query.dtype)
    assert rule in ("zero_sink", "sink_logit")
    shim = types.SimpleNamespace(num_key_value_groups=H // KV, sinks=sinks, training=False)
    mask = torch.zeros(1, 1, T, T, dtype=query.dtype).masked_fill(~_causal(T, T, query.device), float("-inf"))
    return gpt_oss_eager(shim, query, key, value, mask, scaling, dropout)


AttentionInterface.register("streamllm_sink", streamllm_sink_attention)
AttentionInterface.register("streamllm_gpt_oss_ref", gpt_oss_reference)


class _Float64Softmax:
    """Lift HF eager's `softmax(..., dtype=torch.float32)` to float64 for float64 inputs."""

    def __enter__(self):
        self.orig = F.softmax

        def softmax(x, dim=None, _stacklevel=3, dtype=None):
            if x.dtype == torch.float64 and dtype == torch.float32:
                dtype = torch.float64
            return self.orig(x, dim=dim, _stacklevel=_stacklevel, dtype=dtype)

        F.softmax = softmax
        return self

    def __exit__(self, *exc):
        F.softmax = self.orig


# --------------------------------------------------------------------------------------------
# float64 patches (see the module docstring)
# --------------------------------------------------------------------------------------------


def _rope_forward_f64(self, x, position_ids):
    cfg = self.config
    rp = cfg.rope_parameters
    assert rp["rope_type"] == "default" and self.attention_scaling == 1.0
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    dim = int(head_dim * rp.get("partial_rotary_factor", 1.0))
    inv_freq = 1.0 / (float(rp["rope_theta"]) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def _rmsnorm_forward_nocast(self, h):
    variance = h.pow(2).mean(-1, keepdim=True)
    return self.weight * (h * torch.rsqrt(variance + self.variance_epsilon))


def patch_float64(model):
    inner = model.gpt_neox if isinstance(model, GPTNeoXForCausalLM) else model.model
    inner.rotary_emb.forward = types.MethodType(_rope_forward_f64, inner.rotary_emb)
    for mod in model.modules():
        if type(mod).__name__ == "LlamaRMSNorm":
            mod.forward = types.MethodType(_rmsnorm_forward_nocast, mod)


def check_patches(model32):
    """In float32 the patched modules must reproduce HF's originals."""
    inner = model32.gpt_neox if isinstance(model32, GPTNeoXForCausalLM) else model32.model
    x = torch.zeros(1, 1, 8)
    pos = torch.arange(20)[None]
    c0, s0 = inner.rotary_emb(x, pos)
    c1, s1 = _rope_forward_f64(inner.rotary_emb, x, pos)
    assert c0.shape == c1.shape and (c0 - c1).abs().max() < 1e-5 and (s0 - s1).abs().max() < 1e-5
    g = torch.Generator().manual_seed(7)
    for mod in model32.modules():
        if type(mod).__name__ == "LlamaRMSNorm":
            h = torch.randn(3, mod.weight.shape[0], generator=g)
            assert torch.equal(mod(h), _rmsnorm_forward_nocast(mod, h))


# --------------------------------------------------------------------------------------------
# Models, data, loss
# --------------------------------------------------------------------------------------------


def build_model(name: str):
    family, sink, k, tie, seed = CASES[name]
    cfg = make_config(family, N_TEXT + k, tie, sink, k)
    torch.manual_seed(seed)
    cls = GPTNeoXForCausalLM if family == "gpt_neox" else LlamaForCausalLM
    model = cls(cfg)
    if sink == "sink_logit":
        for attn in attn_modules(model):
            attn.sinks = nn.Parameter(torch.zeros(cfg.num_attention_heads))
    if tie:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    else:
        head = model.lm_head.weight
        assert all(head is not p for n, p in model.named_parameters() if n != "lm_head.weight")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():  # tied parameters appear once
            z = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if pname.endswith(".sinks"):
                v = z
            elif pname.endswith(".bias"):
                v = 0.02 * z
            elif p.dim() == 1:  # LayerNorm / RMSNorm weights
                v = 1.0 + 0.1 * z
            elif pname.endswith(("embed_in.weight", "embed_tokens.weight")):
                v = EMB_STD * z
            else:
                v = z / math.sqrt(p.shape[1])
            p.copy_(v.to(torch.float32))
    model.eval()
    return model


def text_chunks():
    """42 chunks of L+1 random text tokens: chunks 0-1 = batch.json, 2-41 = the 20 micro-batches."""
    rng = np.random.default_rng(TEXT_SEED)
    n = 2 + 2 * HYPER["steps"] * HYPER["grad_accum"]
    stream = rng.integers(0, N_TEXT, size=n * (L + 1)).tolist()
    return [stream[i * (L + 1) : (i + 1) * (L + 1)] for i in range(n)]


def make_batch(chunks, vocab: int, k: int):
    sinks = list(range(vocab - k, vocab))
    inputs = [sinks + c[:L] for c in chunks]
    targets = [[-100] * k + c[1 : L + 1] for c in chunks]
    return torch.tensor(inputs), torch.tensor(targets)


def loss_of(model, inputs, targets):
    logits = model(input_ids=inputs, use_cache=False).logits
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="mean")
    return loss, logits


def loss_and_grads(model, inputs, targets):
    model.zero_grad(set_to_none=True)
    loss, logits = loss_of(model, inputs, targets)
    loss.backward()
    # (a parameter the rule does not use, e.g. `sinks` under the vanilla rule, gets a zero gradient)
    grads = {
        n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()
    }
    model.zero_grad(set_to_none=True)
    return loss.item(), logits.detach(), grads


def with_attn(model, impl: str):
    model.set_attn_implementation(impl)
    return model


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


def lr_at(s: int) -> float:
    h = HYPER
    if s < h["warmup_steps"]:
        return h["lr_max"] * (s + 1) / h["warmup_steps"]
    frac = min(1.0, (s - h["warmup_steps"]) / (h["total_steps"] - h["warmup_steps"]))
    return h["lr_min"] + 0.5 * (h["lr_max"] - h["lr_min"]) * (1.0 + math.cos(math.pi * frac))


def analytic_zero_grad_entries(model) -> dict:
    """Parameter entries whose gradient is analytically zero (so Adam amplifies round-off there).

    With plain softmax attention, adding a constant to every score of a row changes nothing. The
    key bias b_k adds q_i . b_k to every score of row i, except where RoPE rotates it. So the key
    bias entries of GPT-NeoX's pass-through (non-rotary) dims get a zero gradient:
    query_key_value.bias[3hD + D + rot .. 3hD + 2D - 1] for every head h (D = head_dim).
    The zero_sink / sink_logit rules break the shift invariance, so they have no such entries.
    """
    cfg = model.config
    if not isinstance(model, GPTNeoXForCausalLM) or cfg.streamllm_sink not in ("vanilla", "learnable_sink"):
        return {}
    H = cfg.num_attention_heads
    D = cfg.hidden_size // H
    rot = int(D * cfg.rope_parameters["partial_rotary_factor"])
    out = {}
    for layer in range(cfg.num_hidden_layers):
        m = torch.zeros(3 * H * D, dtype=torch.bool)
        for h in range(H):
            m[3 * h * D + D + rot : 3 * h * D + 2 * D] = True
        out[f"gpt_neox.layers.{layer}.attention.query_key_value.bias"] = m
    return out


def adamw_run(model32, chunks, vocab: int, k: int, dtype):
    """The 10-step AdamW run of run.json, from model32's weights, computed in `dtype`."""
    model = copy.deepcopy(model32).to(dtype)
    if dtype == torch.float64:
        patch_float64(model)
    with_attn(model, "streamllm_sink")
    model.eval()  # no dropout anywhere; eval() only documents it
    named = list(model.named_parameters())  # a tied weight appears once
    plist = [p for _, p in named]
    groups = [
        {"params": [p for p in plist if p.dim() >= 2], "weight_decay": HYPER["weight_decay"]},
        {"params": [p for p in plist if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(
        groups,
        lr=HYPER["lr_max"],
        betas=(HYPER["beta1"], HYPER["beta2"]),
        eps=HYPER["eps"],
        foreach=False,
        fused=False,
    )
    micro, losses, micro_losses, norms, lrs = [], [], [], [], []
    A = HYPER["grad_accum"]
    for s in range(HYPER["steps"]):
        opt.zero_grad(set_to_none=True)
        step_losses = []
        for a in range(A):
            j = 2 + 2 * (s * A + a)
            mi, mt = make_batch(chunks[j : j + 2], vocab, k)
            micro.append({"inputs": mi.tolist(), "targets": [[-1 if t < 0 else t for t in row] for row in mt.tolist()]})
            lo, _ = loss_of(model, mi, mt)
            (lo / A).backward()  # gradient = mean of the micro-batch gradients
            step_losses.append(lo.item())
        losses.append(sum(step_losses) / A)
        micro_losses.extend(step_losses)
        norm = torch.nn.utils.clip_grad_norm_(plist, HYPER["clip_norm"], foreach=False)  # returns the pre-clip norm
        norms.append(norm.item())
        lr = lr_at(s)
        lrs.append(lr)
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.step()
    final = {n: p.detach().clone() for n, p in named}
    return micro, losses, micro_losses, norms, lrs, final


# --------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------


def name_map(model, saved: dict) -> dict:
    """in-memory parameter name -> name transformers saved it under (matched by value, bit-exact)."""
    out = {}
    for n, p in model.named_parameters():
        hits = [s for s, t in saved.items() if t.shape == p.shape and torch.equal(t, p.detach())]
        assert len(hits) == 1, (n, hits)
        out[n] = hits[0]
    assert sorted(out.values()) == sorted(saved.keys())
    return out


def run_case(name: str, stage: Path) -> dict:
    family, sink, k, tie, seed = CASES[name]
    vocab = N_TEXT + k
    model32 = build_model(name)
    check_patches(model32)

    # 1. config.json + model.safetensors exactly as save_pretrained writes them.
    with tempfile.TemporaryDirectory() as tmp:
        model32.save_pretrained(tmp)
        out = stage / name
        out.mkdir(parents=True)
        shutil.copy(Path(tmp) / "config.json", out / "config.json")
        shutil.copy(Path(tmp) / "model.safetensors", out / "model.safetensors")
    saved = load_file(out / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in saved.values())
    names = name_map(model32, saved)
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json["streamllm_sink"] == sink and cfg_json["streamllm_sink_tokens"] == k
    assert "attn_implementation" not in json.dumps(cfg_json)
    # transformers reads the same bits back (sinks are not a known parameter: it drops them)
    reloaded = type(model32).from_pretrained(out, dtype=torch.float32)
    rsd = reloaded.state_dict()
    for n, p in model32.named_parameters():
        if not n.endswith(".sinks"):
            assert torch.equal(rsd[n], p.detach()), n
    del reloaded

    chunks = text_chunks()
    inputs, targets = make_batch(chunks[0:2], vocab, k)

    # 2. float64 reference through HF's modules.
    model = copy.deepcopy(model32).double()
    patch_float64(model)
    checks = {}

    global _FORCE_RULE
    # (a) vanilla rule: our function == eager (float64 softmax) == sdpa, logits and gradients.
    _FORCE_RULE = "vanilla"
    _, lg_v, gr_v = loss_and_grads(with_attn(model, "streamllm_sink"), inputs, targets)
    _FORCE_RULE = None
    with _Float64Softmax():
        _, lg_e, gr_e = loss_and_grads(with_attn(model, "eager"), inputs, targets)
    _, lg_s, gr_s = loss_and_grads(with_attn(model, "sdpa"), inputs, targets)
    _, lg_e32, _ = loss_and_grads(with_attn(model, "eager"), inputs, targets)  # HF's float32 softmax
    checks["vanilla_vs_eager_f64_logits"] = (lg_v - lg_e).abs().max().item()
    checks["vanilla_vs_eager_f64_grads"] = max_diff(gr_v, gr_e)
    checks["vanilla_vs_sdpa_logits"] = (lg_v - lg_s).abs().max().item()
    checks["vanilla_vs_sdpa_grads"] = max_diff(gr_v, gr_s)
    checks["vanilla_vs_eager_unmodified_logits"] = (lg_v - lg_e32).abs().max().item()
    for key in ("eager_f64_logits", "eager_f64_grads", "sdpa_logits", "sdpa_grads"):
        assert checks["vanilla_vs_" + key] < 1e-12, (name, key, checks)
    assert checks["vanilla_vs_eager_unmodified_logits"] < 1e-5, (name, checks)

    # float32 HF (unpatched rope / RMSNorm, eager) vs the float64 reference, vanilla rule
    with torch.no_grad():
        lg32 = with_attn(copy.deepcopy(model32), "eager")(input_ids=inputs, use_cache=False).logits
    checks["f32_hf_vs_f64_logits"] = (lg32.double() - lg_v).abs().max().item()
    assert checks["f32_hf_vs_f64_logits"] < 1e-4, (name, checks)

    # (b) the case's own rule
    loss, logits, grads = loss_and_grads(with_attn(model, "streamllm_sink"), inputs, targets)
    if sink in ("zero_sink", "sink_logit"):
        _, lg_r, gr_r = loss_and_grads(with_attn(model, "streamllm_gpt_oss_ref"), inputs, targets)
        with_attn(model, "streamllm_sink")
        checks["rule_vs_gpt_oss_logits"] = (logits - lg_r).abs().max().item()
        checks["rule_vs_gpt_oss_grads"] = max_diff(grads, gr_r)
        assert checks["rule_vs_gpt_oss_logits"] < 1e-12 and checks["rule_vs_gpt_oss_grads"] < 1e-12, (name, checks)
        checks["rule_vs_vanilla_logits"] = (logits - lg_v).abs().max().item()
        assert checks["rule_vs_vanilla_logits"] > 1e-2  # the variant matters
    else:
        assert torch.equal(logits, lg_v)

    # the same loss and gradients from HF's float32 modules (what a float32 trainer should get)
    loss32, _, grads32 = loss_and_grads(with_attn(copy.deepcopy(model32), "streamllm_sink"), inputs, targets)
    checks["f32_loss"] = abs(loss32 - loss)
    checks["f32_grads_max"] = max_diff({n: g.double() for n, g in grads32.items()}, grads)
    assert checks["f32_loss"] < 1e-5 and checks["f32_grads_max"] < 1e-5, (name, checks)

    # (c) finite differences on a few gradient entries (central, h = 1e-6)
    g = torch.Generator().manual_seed(seed + 1)
    params = dict(model.named_parameters())
    probe = [n for n in params if n.endswith(".sinks")][:1]
    if k > 0:  # a sink token's embedding row (the index is forced to row vocab-1 below)
        probe += [n for n in params if n.endswith(("embed_in.weight", "embed_tokens.weight"))]
    probe += [sorted(params)[int(i)] for i in torch.randint(0, len(params), (3,), generator=g)]
    fd_err = 0.0
    for n in probe:
        p = params[n]
        idx = tuple(int(torch.randint(0, s, (1,), generator=g)) for s in p.shape)
        if n.endswith(("embed_in.weight", "embed_tokens.weight")) and k > 0:
            idx = (vocab - 1,) + idx[1:]  # a sink-token row
        h = 1e-6
        with torch.no_grad():
            orig = p[idx].item()
            p[idx] = orig + h
            lp = loss_of(model, inputs, targets)[0].item()
            p[idx] = orig - h
            lm = loss_of(model, inputs, targets)[0].item()
            p[idx] = orig
        fd = (lp - lm) / (2 * h)
        fd_err = max(fd_err, abs(fd - grads[n][idx].item()) / max(1e-2, abs(fd)))  # round-off ~1e-9
    checks["finite_difference_rel"] = fd_err
    assert fd_err < 1e-6, (name, fd_err)

    # 3. AdamW run from the same initial weights (float64), and the same run in float32 (HF's
    # float32 modules + our attention function) to show what an honest float32 trainer gets.
    run = adamw_run(model32, chunks, vocab, k, torch.float64)
    micro, losses, micro_losses, norms, lrs, final_params = run
    run32 = adamw_run(model32, chunks, vocab, k, torch.float32)
    checks["f32_run_losses"] = max(abs(a - b) for a, b in zip(losses, run32[1]))
    checks["f32_run_grad_norms_rel"] = max(abs(a - b) / a for a, b in zip(norms, run32[3]))
    dw = {n: (final_params[n].float() - run32[5][n]).abs() for n in final_params}
    checks["f32_run_final_max"] = max(d.max().item() for d in dw.values())
    zero = analytic_zero_grad_entries(model32)
    checks["f32_run_final_max_other"] = max(
        (d[~zero[n]] if n in zero else d).max().item() for n, d in dw.items()
    )
    for n, z in zero.items():  # those gradients are round-off in float64 too
        assert grads[n][z].abs().max() < 1e-15, (name, n)
    assert checks["f32_run_losses"] < 1e-5 and checks["f32_run_final_max_other"] < 2e-5, (name, checks)

    # everything validated: write the rest of the case
    tgt_json = [[-1 if t < 0 else t for t in row] for row in targets.tolist()]
    write_json(out / "batch.json", {"inputs": inputs.tolist(), "targets": tgt_json, "loss": loss})
    save_file({names[n]: grads[n].to(torch.float32).contiguous() for n in grads}, out / "grads.safetensors")
    final = {names[n]: p.to(torch.float32).contiguous() for n, p in final_params.items()}
    save_file(final, out / "final.safetensors")
    write_json(
        out / "run.json",
        {
            "hyper": HYPER,
            "micro_batches": micro,
            "losses": losses,
            "micro_losses": micro_losses,
            "grad_norms": norms,
            "lrs": lrs,
        },
    )
    return {"loss": loss, "losses": losses, "grad_norms": norms, "checks": checks, "names": sorted(saved)}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _dump(x, indent=0) -> str:
    pad = " " * indent
    if isinstance(x, dict):
        items = [f'{pad}  {json.dumps(k)}: {_dump(v, indent + 2).lstrip()}' for k, v in x.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(x, list) and all(not isinstance(v, (dict, list)) for v in x):
        return pad + json.dumps(x, separators=(", ", ": "))  # numbers on one line
    if isinstance(x, list):
        return pad + "[\n" + ",\n".join(_dump(v, indent + 2) for v in x) + "\n" + pad + "]"
    return pad + json.dumps(x)  # float: shortest repr that round-trips (float64)


def write_json(path: Path, obj) -> None:
    path.write_text(_dump(obj) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="*", help=f"subset of: {' '.join(CASES)}")
    args = ap.parse_args()
    todo = args.cases or list(CASES)
    for c in todo:
        if c not in CASES:
            ap.error(f"unknown case {c!r}")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=OUT_DIR))
    try:
        results = {}
        for c in todo:
            results[c] = run_case(c, stage)
            r = results[c]
            print(f"{c}: batch loss {r['loss']!r}")
            print(f"  step losses {[round(x, 6) for x in r['losses']]}")
            print(f"  grad norms  {[round(x, 4) for x in r['grad_norms']]}")
            print("  checks " + ", ".join(f"{k}={v:.1e}" for k, v in r["checks"].items()))
        for c in todo:  # all cases validated: replace their directories
            dst = OUT_DIR / c
            if dst.exists():
                shutil.rmtree(dst)
            (stage / c).rename(dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; wrote {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
