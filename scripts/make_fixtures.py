#!/usr/bin/env python3
"""Generate golden fixtures for the streamllm C++ tests.

Run by hand (CI needs no Python):

    /work/venv/bin/python scripts/make_fixtures.py            # all fixtures
    /work/venv/bin/python scripts/make_fixtures.py llama mpt  # a subset

Pinned package versions: scripts/requirements-fixtures.txt.
Output: tests/fixtures/models/<name>/ (see tests/fixtures/models/README.md).

For every tiny random model (seeded, deterministic) the script

1. builds the HF model from a config, overwrites every parameter with seeded random values
   (norm weights around 1, non-zero biases, so that every tensor matters), casts to the storage
   dtype and calls ``save_pretrained(dir, safe_serialization=True)``;
2. reloads the directory with ``from_pretrained(dtype=float32, attn_implementation="eager")``
   and computes dense logits / NLLs with HF;
3. runs an INDEPENDENT float64 re-implementation of each family (llama, gpt_neox, falcon, mpt)
   that reads config.json and the *.safetensors files exactly as written to disk (so it also
   documents the on-disk names and fused layouts a C++ loader must handle) and implements the
   exact StreamingLLM cache (DESIGN.md section 2): one token at a time, keep the first S and the
   last R tokens after every step, keys cached before RoPE and re-rotated every step at their
   in-cache positions 0..len-1 (query at len-1); ALiBi uses the same in-cache distances;
4. validates before writing anything:
   - reference dense logits vs HF logits: max |diff| < 1e-4,
   - reference dense NLL vs HF dense NLL: max |diff| < 1e-4,
   - reference streaming NLLs vs an HF-driven streaming run (HF's own modules step by step with a
     DynamicCache that is evicted and whose RoPE keys are re-rotated to in-cache positions):
     max |diff| < 1e-4,
   - reference streaming with S+R >= N equals reference dense (< 1e-10);
5. writes golden.safetensors only when every fixture validated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import save_file as np_save_file
from transformers import (
    FalconConfig,
    FalconForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MptConfig,
    MptForCausalLM,
)
from transformers.cache_utils import DynamicCache

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "fixtures" / "models"

T_LOGITS = 24  # length of input_ids for the dense logits check
N_STREAM = 64  # length of stream_ids for the NLL checks
STREAM_CONFIGS = [(2, 5), (4, 8), (1, 12), (0, 8)]  # (S sinks, R recent)
TOL = 1e-4

# --------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------


def _llama_cfg(vocab, tie, inter=128):
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=inter,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        tie_word_embeddings=tie,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
    )


def _neox_cfg(vocab, parallel, pct, inter):
    return GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=inter,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 16
        hidden_act="gelu",
        rotary_pct=pct,  # legacy names, converted by transformers to rope_parameters
        rotary_emb_base=10000,
        use_parallel_residual=parallel,
        layer_norm_eps=1e-5,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )


def _falcon_cfg(vocab, new_arch, num_kv_heads=None, ffn=128):
    kw = dict(
        vocab_size=vocab,
        hidden_size=64,
        ffn_hidden_size=ffn,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 16
        new_decoder_architecture=new_arch,
        multi_query=True,
        parallel_attn=True,
        bias=False,
        alibi=False,
        layer_norm_epsilon=1e-5,
        max_position_embeddings=128,
        rope_theta=10000.0,
    )
    if num_kv_heads is not None:
        kw["num_kv_heads"] = num_kv_heads
    return FalconConfig(**kw)


def _mpt_cfg(vocab, n_heads, clip_qkv=None):
    return MptConfig(
        vocab_size=vocab,
        d_model=48,  # HF hard-codes the MLP to 4*d_model; 48 keeps the directory < 400 KB
        n_heads=n_heads,
        n_layers=2,
        expansion_ratio=4,
        max_seq_len=128,
        no_bias=True,
        learned_pos_emb=False,
        layer_norm_epsilon=1e-5,
        attn_config={"alibi": True, "alibi_bias_max": 8, "clip_qkv": clip_qkv},
    )


FIXTURES = [
    dict(name="llama", family="llama", cls=LlamaForCausalLM, cfg=lambda: _llama_cfg(256, True),
         dtype=torch.float32, seed=1001),
    dict(name="llama_untied_bf16", family="llama", cls=LlamaForCausalLM, cfg=lambda: _llama_cfg(384, False, 160),
         dtype=torch.bfloat16, seed=1002),
    dict(name="gpt_neox", family="gpt_neox", cls=GPTNeoXForCausalLM,
         cfg=lambda: _neox_cfg(256, True, 0.25, 96), dtype=torch.float32, seed=1003),
    dict(name="gpt_neox_seq", family="gpt_neox", cls=GPTNeoXForCausalLM,
         cfg=lambda: _neox_cfg(320, False, 0.5, 192), dtype=torch.float16, seed=1004),
    dict(name="falcon_mqa", family="falcon", cls=FalconForCausalLM, cfg=lambda: _falcon_cfg(256, False),
         dtype=torch.float32, seed=1005),
    dict(name="falcon_new", family="falcon", cls=FalconForCausalLM, cfg=lambda: _falcon_cfg(288, True, 2),
         dtype=torch.float32, seed=1006),
    dict(name="mpt", family="mpt", cls=MptForCausalLM, cfg=lambda: _mpt_cfg(256, 4), dtype=torch.float32,
         seed=1007),
    dict(name="mpt_clip", family="mpt", cls=MptForCausalLM, cfg=lambda: _mpt_cfg(320, 6, clip_qkv=0.6),
         dtype=torch.float32, seed=1008),
    # Same config, seed, weights and golden tensors as "llama", but sharded.
    dict(name="llama_sharded", family="llama", cls=LlamaForCausalLM, cfg=lambda: _llama_cfg(256, True),
         dtype=torch.float32, seed=1001, max_shard_size="100KB"),
]


# --------------------------------------------------------------------------------------------
# Random weights
# --------------------------------------------------------------------------------------------


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter (tied ones once) with seeded random values.

    2-D weights: N(0, 1/fan_in) (unit-scale activations, O(1) attention scores);
    embeddings: N(0, 0.35^2) (logit std ~2-3 through a tied head);
    norm weights: 1 + 0.2 N(0,1); biases: 0.1 N(0,1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # named_parameters() de-duplicates tied weights
            if p.ndim == 2:
                if "emb" in name or "wte" in name or "lm_head" in name or "embed_out" in name:
                    std = 0.35
                else:
                    std = 1.0 / math.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std)
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float32))
            else:  # norm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float32))


# --------------------------------------------------------------------------------------------
# Reading a saved HF directory (independently of transformers)
# --------------------------------------------------------------------------------------------


def load_dir_f64(d: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    cfg = json.loads((d / "config.json").read_text())
    files = []
    idx = d / "model.safetensors.index.json"
    if idx.exists():
        wm = json.loads(idx.read_text())["weight_map"]
        files = sorted(set(wm.values()))
    else:
        files = ["model.safetensors"]
    w: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(d / f), framework="pt") as fh:
            for k in fh.keys():
                assert k not in w, f"duplicate tensor {k}"
                w[k] = fh.get_tensor(k).to(torch.float64)
    if idx.exists():
        assert set(w) == set(wm), "index.json weight_map does not match the shards"
    return cfg, w


def rope_theta_of(cfg: dict) -> float:
    rp = cfg.get("rope_parameters") or {}
    for key in ("rope_theta",):
        if key in rp:
            return float(rp[key])
    for key in ("rope_theta", "rotary_emb_base"):
        if key in cfg:
            return float(cfg[key])
    return 10000.0


def partial_rotary_of(cfg: dict) -> float:
    rp = cfg.get("rope_parameters") or {}
    if "partial_rotary_factor" in rp:
        return float(rp["partial_rotary_factor"])
    for key in ("partial_rotary_factor", "rotary_pct"):
        if key in cfg:
            return float(cfg[key])
    return 1.0


# --------------------------------------------------------------------------------------------
# float64 reference implementation
# --------------------------------------------------------------------------------------------


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * w
    return y + b if b is not None else y


def gelu(x):  # exact (erf) GELU, as nn.GELU() / ACT2FN["gelu"]
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x):
    return x / (1.0 + torch.exp(-x))


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, pos, rot_dims, theta):
    """x: [..., P, D] (P positions), pos: float64 [P]. NeoX/HF 'rotate-half' RoPE on the first
    rot_dims dims of each head; the rest pass through."""
    inv = 1.0 / (theta ** (torch.arange(0, rot_dims, 2, dtype=torch.float64) / rot_dims))
    ang = pos[:, None] * inv[None, :]  # [P, rot/2]
    ang = torch.cat((ang, ang), dim=-1)  # [P, rot]
    cos, sin = torch.cos(ang), torch.sin(ang)
    xr, xp = x[..., :rot_dims], x[..., rot_dims:]
    xr = xr * cos + rotate_half(xr) * sin
    return torch.cat((xr, xp), dim=-1)


def mpt_alibi_slopes(n_heads: int, alibi_bias_max: float) -> torch.Tensor:
    """MPT's rule (llm-foundry gen_slopes): pad the head count up to a power of two P, slopes
    2^-(i*max/P) for i=1..P; if P != n_heads take the odd-indexed ones first, then the even."""
    p2 = 2 ** math.ceil(math.log2(n_heads))
    s = [2.0 ** (-(i * alibi_bias_max / p2)) for i in range(1, p2 + 1)]
    if p2 != n_heads:
        s = (s[1::2] + s[0::2])[:n_heads]
    return torch.tensor(s, dtype=torch.float64)


class RefModel:
    """One decoder, parameterised by family. Stepping API: new_cache(), step(tok, cache) -> logits."""

    def __init__(self, family: str, cfg: dict, w: dict[str, torch.Tensor]):
        self.family, self.cfg, self.w = family, cfg, w
        getattr(self, f"_init_{family}")()

    # ---- per-family configuration ----
    def _init_llama(self):
        c, w = self.cfg, self.w
        self.L = c["num_hidden_layers"]
        self.H = c["num_attention_heads"]
        self.KV = c.get("num_key_value_heads") or self.H
        self.D = c.get("head_dim") or c["hidden_size"] // self.H
        self.eps = c["rms_norm_eps"]
        self.rot = self.D
        self.theta = rope_theta_of(c)
        self.alibi = None
        self.scale = self.D ** -0.5
        assert c.get("hidden_act", "silu") == "silu"
        self.emb = w["model.embed_tokens.weight"]
        self.head = w.get("lm_head.weight", self.emb)
        if not c.get("tie_word_embeddings", True):
            assert "lm_head.weight" in w

    def _init_gpt_neox(self):
        c, w = self.cfg, self.w
        self.L = c["num_hidden_layers"]
        self.H = self.KV = c["num_attention_heads"]
        self.D = c["hidden_size"] // self.H
        self.eps = c["layer_norm_eps"]
        self.rot = int(self.D * partial_rotary_of(c))
        self.theta = rope_theta_of(c)
        self.alibi = None
        self.scale = self.D ** -0.5
        self.parallel = c.get("use_parallel_residual", True)
        assert c.get("hidden_act", "gelu") == "gelu"
        self.emb = w["gpt_neox.embed_in.weight"]
        self.head = w["embed_out.weight"] if "embed_out.weight" in w else w["lm_head.weight"]

    def _init_falcon(self):
        c, w = self.cfg, self.w
        self.L = c.get("num_hidden_layers", c.get("n_layer"))
        self.H = c.get("num_attention_heads", c.get("n_head"))
        self.D = c["hidden_size"] // self.H
        self.new_arch = c.get("new_decoder_architecture", False)
        if self.new_arch:
            self.KV = c.get("num_kv_heads", c.get("n_head_kv"))
        elif c.get("multi_query", True):
            self.KV = 1  # config.json still says num_kv_heads == num_attention_heads: ignore it
        else:
            self.KV = self.H
        self.parallel = c.get("parallel_attn", True)
        self.n_ln = c.get("num_ln_in_parallel_attn")
        if self.n_ln is None and self.new_arch:
            self.n_ln = 2
        self.eps = c["layer_norm_epsilon"]
        assert not c.get("alibi", False), "falcon alibi is not covered by these fixtures"
        self.rot = self.D
        self.theta = rope_theta_of(c)
        self.alibi = None
        self.scale = self.D ** -0.5
        assert c.get("activation", "gelu") == "gelu"
        self.emb = w["transformer.word_embeddings.weight"]
        self.head = w.get("lm_head.weight", self.emb)

    def _init_mpt(self):
        c, w = self.cfg, self.w
        ac = c.get("attn_config") or {}
        self.L = c["n_layers"]
        self.H = self.KV = c["n_heads"]
        self.D = c["d_model"] // self.H
        self.eps = c.get("layer_norm_epsilon", 1e-5)
        self.rot = 0
        assert ac.get("alibi", False), "mpt fixtures use ALiBi"
        self.alibi = mpt_alibi_slopes(self.H, ac.get("alibi_bias_max", 8))
        self.clip = ac.get("clip_qkv")
        self.scale = ac.get("softmax_scale") or self.D ** -0.5
        assert not ac.get("qk_ln", False)
        self.emb = w["transformer.wte.weight"]
        self.head = w.get("lm_head.weight", self.emb)

    # ---- q, k, v (k before RoPE) for one token: q [H, D], k/v [KV, D] ----
    def qkv(self, l, h):
        H, KV, D, w = self.H, self.KV, self.D, self.w
        if self.family == "llama":
            p = f"model.layers.{l}.self_attn."
            q = linear(h, w[p + "q_proj.weight"], w.get(p + "q_proj.bias")).view(H, D)
            k = linear(h, w[p + "k_proj.weight"], w.get(p + "k_proj.bias")).view(KV, D)
            v = linear(h, w[p + "v_proj.weight"], w.get(p + "v_proj.bias")).view(KV, D)
        elif self.family == "gpt_neox":
            p = f"gpt_neox.layers.{l}.attention.query_key_value."
            f = linear(h, w[p + "weight"], w.get(p + "bias")).view(H, 3 * D)  # per head [q | k | v]
            q, k, v = f[:, :D], f[:, D:2 * D], f[:, 2 * D:]
        elif self.family == "falcon":
            p = f"transformer.h.{l}.self_attention.query_key_value."
            f = linear(h, w[p + "weight"], w.get(p + "bias"))
            if self.new_arch:  # per KV group: [q_0 .. q_{H/KV-1}, k, v]
                f = f.view(KV, H // KV + 2, D)
                q, k, v = f[:, :-2].reshape(H, D), f[:, -2], f[:, -1]
            elif KV == 1:  # 7B multi-query: [q_0 .. q_{H-1}, k, v]
                f = f.view(H + 2, D)
                q, k, v = f[:H], f[H:H + 1], f[H + 1:]
            else:  # plain MHA: per head [q, k, v]
                f = f.view(H, 3, D)
                q, k, v = f[:, 0], f[:, 1], f[:, 2]
        else:  # mpt
            p = f"transformer.blocks.{l}.attn.Wqkv."
            f = linear(h, w[p + "weight"], w.get(p + "bias"))
            if self.clip:
                f = f.clamp(-self.clip, self.clip)
            q, k, v = f[:H * D].view(H, D), f[H * D:2 * H * D].view(H, D), f[2 * H * D:].view(H, D)
        return q, k, v

    def attend(self, l, h, cache):
        """Append this token's (pre-RoPE) k, v to the layer cache and attend with in-cache positions."""
        q, k, v = self.qkv(l, h)
        cache[l][0].append(k)
        cache[l][1].append(v)
        K = torch.stack(cache[l][0], 0)  # [len, KV, D]
        V = torch.stack(cache[l][1], 0)
        n = K.shape[0]
        pos = torch.arange(n, dtype=torch.float64)
        if self.rot > 0:
            K = apply_rope(K.transpose(0, 1), pos, self.rot, self.theta).transpose(0, 1)
            q = apply_rope(q[:, None, :], pos[-1:], self.rot, self.theta)[:, 0, :]
        g = self.H // self.KV
        Kh = K[:, torch.arange(self.H) // g, :]  # query head i uses kv head i // (H/KV)
        Vh = V[:, torch.arange(self.H) // g, :]
        s = torch.einsum("hd,nhd->hn", q, Kh) * self.scale  # [H, len]
        if self.alibi is not None:
            s = s - self.alibi[:, None] * (n - 1 - pos)[None, :]
        a = torch.softmax(s, dim=-1)
        o = torch.einsum("hn,nhd->hd", a, Vh).reshape(self.H * self.D)
        w = self.w
        if self.family == "llama":
            p = f"model.layers.{l}.self_attn.o_proj."
        elif self.family == "gpt_neox":
            p = f"gpt_neox.layers.{l}.attention.dense."
        elif self.family == "falcon":
            p = f"transformer.h.{l}.self_attention.dense."
        else:
            p = f"transformer.blocks.{l}.attn.out_proj."
        return linear(o, w[p + "weight"], w.get(p + "bias"))

    def block(self, l, x, cache):
        w, eps = self.w, self.eps
        if self.family == "llama":
            p = f"model.layers.{l}."
            x = x + self.attend(l, rms_norm(x, w[p + "input_layernorm.weight"], eps), cache)
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
            m = p + "mlp."
            act = silu(linear(h, w[m + "gate_proj.weight"], w.get(m + "gate_proj.bias")))
            up = linear(h, w[m + "up_proj.weight"], w.get(m + "up_proj.bias"))
            return x + linear(act * up, w[m + "down_proj.weight"], w.get(m + "down_proj.bias"))
        if self.family == "gpt_neox":
            p = f"gpt_neox.layers.{l}."

            def ln(name, t):
                return layer_norm(t, w[p + name + ".weight"], w[p + name + ".bias"], eps)

            def mlp(t):
                t = gelu(linear(t, w[p + "mlp.dense_h_to_4h.weight"], w[p + "mlp.dense_h_to_4h.bias"]))
                return linear(t, w[p + "mlp.dense_4h_to_h.weight"], w[p + "mlp.dense_4h_to_h.bias"])

            a = self.attend(l, ln("input_layernorm", x), cache)
            if self.parallel:
                return x + a + mlp(ln("post_attention_layernorm", x))
            x = x + a
            return x + mlp(ln("post_attention_layernorm", x))
        if self.family == "falcon":
            p = f"transformer.h.{l}."

            def ln(name, t):
                return layer_norm(t, w[p + name + ".weight"], w.get(p + name + ".bias"), eps)

            def mlp(t):
                t = gelu(linear(t, w[p + "mlp.dense_h_to_4h.weight"], w.get(p + "mlp.dense_h_to_4h.bias")))
                return linear(t, w[p + "mlp.dense_4h_to_h.weight"], w.get(p + "mlp.dense_4h_to_h.bias"))

            if self.new_arch and self.n_ln == 2:
                return x + self.attend(l, ln("ln_attn", x), cache) + mlp(ln("ln_mlp", x))
            h = ln("input_layernorm", x)
            if self.new_arch or self.parallel:
                return x + self.attend(l, h, cache) + mlp(h)
            x = x + self.attend(l, h, cache)
            return x + mlp(ln("post_attention_layernorm", x))
        # mpt: LayerNorm without bias (a bias tensor, if ever present, is honoured), sequential
        p = f"transformer.blocks.{l}."
        x = x + self.attend(l, layer_norm(x, w[p + "norm_1.weight"], w.get(p + "norm_1.bias"), eps), cache)
        h = layer_norm(x, w[p + "norm_2.weight"], w.get(p + "norm_2.bias"), eps)
        h = gelu(linear(h, w[p + "ffn.up_proj.weight"], w.get(p + "ffn.up_proj.bias")))
        return x + linear(h, w[p + "ffn.down_proj.weight"], w.get(p + "ffn.down_proj.bias"))

    def final_norm(self, x):
        w, eps = self.w, self.eps
        if self.family == "llama":
            return rms_norm(x, w["model.norm.weight"], eps)
        if self.family == "gpt_neox":
            return layer_norm(x, w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"], eps)
        if self.family == "falcon":
            return layer_norm(x, w["transformer.ln_f.weight"], w.get("transformer.ln_f.bias"), eps)
        return layer_norm(x, w["transformer.norm_f.weight"], w.get("transformer.norm_f.bias"), eps)

    def new_cache(self):
        return [([], []) for _ in range(self.L)]

    def step(self, tok: int, cache) -> torch.Tensor:
        x = self.emb[tok]
        for l in range(self.L):
            x = self.block(l, x, cache)
        return self.head @ self.final_norm(x)

    @staticmethod
    def evict(cache, S: int, R: int):
        for ks, vs in cache:
            n = len(ks)
            if n > S + R:
                keep = list(range(S)) + list(range(n - R, n))
                ks[:] = [ks[i] for i in keep]
                vs[:] = [vs[i] for i in keep]

    def run(self, ids, S=None, R=None) -> torch.Tensor:
        """Logits [len(ids), vocab] (float64). S=None: dense (no eviction)."""
        cache = self.new_cache()
        out = []
        for t in ids:
            out.append(self.step(int(t), cache))
            if S is not None:
                self.evict(cache, S, R)
        return torch.stack(out, 0)


def nll_from_logits(logits: torch.Tensor, ids) -> torch.Tensor:
    lp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    tgt = torch.as_tensor(np.asarray(ids[1:], dtype=np.int64))
    return -lp[:-1].gather(1, tgt[:, None])[:, 0]


# --------------------------------------------------------------------------------------------
# HF-driven streaming (cross-check of the reference's cache semantics with HF's own modules)
# --------------------------------------------------------------------------------------------


def hf_stream_nll(model, ref: RefModel, ids, S: int, R: int) -> torch.Tensor:
    """Feed one token at a time through the HF model with a DynamicCache. HF caches RoPE keys
    rotated at the position they were fed with; before each step we re-rotate every cached key
    from its old slot to its new in-cache slot (RoPE composes: R(new) = R(new-old) R(old)), and
    feed the token at position_ids = len. MPT (ALiBi) caches raw keys; HF's MPT bias is relative
    to the last key, i.e. exactly the in-cache distance."""
    uses_rope = ref.rot > 0
    layers = None  # per layer: (keys [1,KV,n,D], values, slot positions [n])
    nll = []
    for t in range(len(ids) - 1):
        n = 0 if layers is None else layers[0][0].shape[2]
        if layers is None:
            cache = DynamicCache()
        else:
            data = []
            for k, v, slots in layers:
                if uses_rope:
                    delta = torch.arange(n, dtype=torch.float64) - slots
                    k = apply_rope(k.to(torch.float64), delta, ref.rot, ref.theta).to(torch.float32)
                data.append((k, v))
            cache = DynamicCache(ddp_cache_data=data)
        kw = dict(input_ids=torch.tensor([[int(ids[t])]]), cache=cache, use_cache=True)
        if uses_rope:
            kw["position_ids"] = torch.tensor([[n]])
        with torch.no_grad():
            out = model(**kw)
        lp = torch.log_softmax(out.logits[0, -1].to(torch.float64), dim=-1)
        nll.append(-lp[int(ids[t + 1])])
        c = out.cache
        layers = []
        for li in range(ref.L):
            k, v = c.layers[li].keys, c.layers[li].values
            m = k.shape[2]
            assert m == n + 1
            keep = list(range(m)) if m <= S + R else list(range(S)) + list(range(m - R, m))
            idx = torch.tensor(keep)
            layers.append((k[:, :, idx].clone(), v[:, :, idx].clone(), idx.to(torch.float64)))
    return torch.stack(nll)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def dir_size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def build_fixture(fx: dict, work: Path) -> dict:
    name = fx["name"]
    d = work / name
    torch.manual_seed(fx["seed"])
    cfg = fx["cfg"]()
    model = fx["cls"](cfg)
    randomize_(model, fx["seed"])
    model = model.to(fx["dtype"])
    save_kw = dict(safe_serialization=True)
    if "max_shard_size" in fx:
        save_kw["max_shard_size"] = fx["max_shard_size"]
    model.save_pretrained(d, **save_kw)
    del model

    # Token ids (seeded independently of the weights' generator).
    rng = np.random.default_rng(fx["seed"] + 7)
    vocab = cfg.vocab_size
    input_ids = rng.integers(0, vocab, size=T_LOGITS).astype(np.int32)
    stream_ids = rng.integers(0, vocab, size=N_STREAM).astype(np.int32)

    # HF, reloaded from disk, float32 compute.
    hf = fx["cls"].from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    hf.eval()
    with torch.no_grad():
        hf_logits = hf(input_ids=torch.as_tensor(input_ids[None].astype(np.int64))).logits[0]
        hf_stream_logits = hf(input_ids=torch.as_tensor(stream_ids[None].astype(np.int64))).logits[0]
    nll_dense_hf = nll_from_logits(hf_stream_logits, stream_ids)

    # Independent float64 reference from the files on disk.
    jcfg, w = load_dir_f64(d)
    # the HF model and the files must hold the same numbers
    sd = hf.state_dict()
    for k, t in w.items():
        hk = "lm_head.weight" if (fx["family"] == "gpt_neox" and k == "embed_out.weight") else k
        assert torch.equal(sd[hk].to(torch.float64), t), f"{name}: {k} differs after reload"
    ref = RefModel(fx["family"], jcfg, w)
    ref_logits = ref.run(input_ids)
    diff_logits = (ref_logits - hf_logits.to(torch.float64)).abs().max().item()
    ref_dense = ref.run(stream_ids)
    nll_dense = nll_from_logits(ref_dense, stream_ids)
    diff_nll_dense = (nll_dense - nll_dense_hf).abs().max().item()
    assert diff_logits < TOL, f"{name}: reference vs HF logits differ by {diff_logits:.3e}"
    assert diff_nll_dense < TOL, f"{name}: reference vs HF dense NLL differ by {diff_nll_dense:.3e}"

    # Sanity: a cache larger than the stream is dense.
    big = nll_from_logits(ref.run(stream_ids, 2, N_STREAM), stream_ids)
    assert (big - nll_dense).abs().max().item() < 1e-10, f"{name}: big-cache streaming != dense"

    golden = {
        "input_ids": input_ids,
        "logits": hf_logits.numpy().astype(np.float32),
        "stream_ids": stream_ids,
        "nll_dense": nll_dense.numpy().astype(np.float32),
        "nll_dense_hf": nll_dense_hf.numpy().astype(np.float32),
    }
    report = dict(name=name, family=fx["family"], dtype=str(fx["dtype"]).replace("torch.", ""),
                  diff_logits=diff_logits, diff_nll_dense=diff_nll_dense, stream={})
    for S, R in STREAM_CONFIGS:
        nll = nll_from_logits(ref.run(stream_ids, S, R), stream_ids)
        nll_hf = hf_stream_nll(hf, ref, stream_ids, S, R)
        d_hf = (nll - nll_hf).abs().max().item()
        d_dense = (nll - nll_dense).abs().max().item()
        assert d_hf < TOL, f"{name}: S={S} R={R}: reference vs HF-driven streaming differ by {d_hf:.3e}"
        assert d_dense > 1e-3, f"{name}: S={S} R={R}: streaming NLL indistinguishable from dense"
        golden[f"nll_S{S}_R{R}"] = nll.numpy().astype(np.float32)
        report["stream"][(S, R)] = (d_hf, d_dense)

    # A single metadata key: safetensors writes metadata in hash order, so more keys would make
    # the file bytes differ between runs.
    meta = {"generator": f"scripts/make_fixtures.py (torch {torch.__version__}, "
                         f"transformers {transformers.__version__})"}
    np_save_file(golden, str(d / "golden.safetensors"), metadata=meta)
    report["files"] = {f.name: f.stat().st_size for f in sorted(d.iterdir())}
    report["size"] = dir_size(d)
    report["vocab"] = vocab
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="fixtures to build (default: all)")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    todo = [f for f in FIXTURES if not args.names or f["name"] in args.names]
    unknown = set(args.names) - {f["name"] for f in FIXTURES}
    if unknown:
        ap.error(f"unknown fixtures: {sorted(unknown)}")

    work = Path(tempfile.mkdtemp(prefix="streamllm_fixtures_"))
    try:
        reports = [build_fixture(fx, work) for fx in todo]  # asserts: nothing is written on failure
        args.out.mkdir(parents=True, exist_ok=True)
        for r in reports:
            dst = args.out / r["name"]
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(work / r["name"], dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for r in reports:
        print(f"\n{r['name']} ({r['family']}, {r['dtype']}, vocab {r['vocab']}): {r['size']} bytes")
        for f, s in r["files"].items():
            print(f"    {f:45s} {s:8d}")
        print(f"  max|ref-HF| logits {r['diff_logits']:.2e}, dense NLL {r['diff_nll_dense']:.2e}")
        for (S, R), (d_hf, d_dense) in r["stream"].items():
            print(f"  S={S} R={R:2d}: max|ref-HFstream| {d_hf:.2e}   max|stream-dense| {d_dense:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
