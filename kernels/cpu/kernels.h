// streamllm CPU kernels other than linear: norms, RoPE, activations, embedding, streaming attention.
// Compute only: every argument was checked by the front-end (src/ops). All activations are f32.
#pragma once
#include <cstdint>  // int64_t

#include "core/attn_geometry.h"  // AttnGeometry
#include "core/dtype.h"          // DType

namespace sllm::cpu {

// y = x / sqrt(mean(x^2) + eps) * w                     x, y: (T, D); w: (D) f32
void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* y);
// y = (x - mean) / sqrt(var + eps) * w + b (b may be null)  x, y: (T, D); w, b: (D) f32
void layernorm(const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y);

// Rotary embedding, in place. x: (T, H, head_dim) with row stride ld (elements between tokens); only the first
// rot_dims of each head rotate. cos/sin: (T, rot_dims/2), one row per token (tables computed in double, see
// rope_tables). interleaved=false: GPT-NeoX "rotate_half" pairs (i, i + rot_dims/2); true: GPT-J pairs (2i, 2i+1).
void rope_apply(float* x, int64_t T, int64_t H, int64_t head_dim, int64_t ld, int64_t rot_dims, const float* cos,
                const float* sin, bool interleaved);
// cos/sin tables for absolute positions pos[0..T): angle = pos * theta^(-2i/rot_dims), computed in double so that
// positions in the millions keep full float accuracy.
void rope_tables(const int64_t* pos, int64_t T, int64_t rot_dims, double theta, float* cos, float* sin);

// In place activations on n elements.
void gelu_erf(float* x, int64_t n);    // 0.5 x (1 + erf(x / sqrt 2))   (HF "gelu")
void gelu_tanh(float* x, int64_t n);   // tanh approximation           (HF "gelu_new", "gelu_pytorch_tanh")
void relu(float* x, int64_t n);
// out[t, i] = silu(gate[t, i]) * up[t, i]; gate/up rows of length F with strides ldg/ldu; out (T, F) contiguous.
void swiglu(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t T, int64_t F, float* out);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

// out[t, :] = table[ids[t], :] converted to f32. table: (V, D) in dtype t.
void embedding(const int32_t* ids, int64_t T, const void* table, DType t, int64_t D, float* out);

// The cache geometry is shared by every backend (src/core/attn_geometry.h).
using AttnGeometry = ::sllm::AttnGeometry;

// Streaming attention for T consecutive queries, stream tokens t0..t0+T-1, whose K/V are already in the cache.
// Query t attends to sinks 0..min(S,t+1)-1 and recent tokens max(S, t-R)..t — the paper's per-token semantics.
//   q_abs:  (T, n_heads, head_dim), ld_q between tokens: rotated at absolute position (used against recent keys)
//   q_sink: same layout, rotated at the in-cache position min(t, S+R) (used against sink keys); may equal q_abs
//   alibi:  (n_heads) slopes or null: bias = -slope * in-cache distance
//   extra_logit: (n_heads) or null: an extra logit in the softmax denominator with no value (sink_logit variant;
//            0 for every head gives softmax-off-by-one)
//   out:    (T, n_heads, head_dim) contiguous
void attention_stream(const float* q_abs, const float* q_sink, int64_t ld_q, int64_t T, int64_t t0,
                      const void* kcache, const void* vcache, const AttnGeometry& g, float scale,
                      const float* alibi, const float* extra_logit, float* out);

// Writes the K/V rows of stream tokens t0..t0+T-1 into their cache slots (sink slot or ring slot).
//   k: (T, n_kv_heads, head_dim) with row stride ldk; v likewise with ldv.
// The cache holds f32 or, when g.kv_f16, IEEE half (rounded to nearest even).
void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t T, int64_t t0, void* kcache,
              void* vcache, const AttnGeometry& g);

}  // namespace sllm::cpu
