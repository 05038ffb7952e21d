// streamllm CPU kernels for training: the backward passes, the fused loss, the optimizer, and the forward pieces
// whose intermediate results the backward needs (norm statistics, attention log-sum-exp).
//
// Compute only (no model knowledge, no checks: the trainer's front-end sizes everything). All tensors are f32,
// row-major, contiguous unless a stride is given.
//
// Determinism: every result is a fixed function of the inputs, independent of the thread count. Reductions over
// tokens (weight gradients of norms, bias gradients, the loss, the gradient norm) sum fixed-size chunks in a
// fixed order; matrix products go through the packed GEMM (one accumulator per output, k in order); each
// attention (batch, kv-head) pair is owned by one thread. That is what makes a resumed run bit-identical to an
// uninterrupted one on the same machine.
#pragma once
#include <cstdint>  // int64_t

namespace sllm::cpu::train {

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols.
void transpose(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd);

// out[d] += sum_t x[t * ld + d]   (bias gradients)
void col_sum_acc(const float* x, int64_t T, int64_t D, int64_t ld, float* out);

// y[i] (+)= a[i] + b[i]
void add(const float* a, const float* b, int64_t n, float* y);

// LayerNorm (layer = true: y = (x - mean) * rstd * w + b, b may be null) or RMSNorm (y = x * rstd * w).
// stats: (T, 2) = [mean (0 for RMSNorm), rstd] per row, saved for the backward.
void norm_fwd(bool layer, const float* x, const float* w, const float* b, float eps, int64_t T, int64_t D, float* y,
              float* stats);
// dx = (or += when acc_dx) d norm / dx; dw += ..., db += ... (db may be null).
void norm_bwd(bool layer, const float* dy, const float* x, const float* w, const float* stats, int64_t T, int64_t D,
              float* dx, bool acc_dx, float* dw, float* db);

// GELU (erf form, HF "gelu"): y = gelu(x); backward dx = dy * gelu'(x) (x: the saved pre-activation).
void gelu_fwd(const float* x, int64_t n, float* y);
void gelu_bwd(const float* dy, const float* x, int64_t n, float* dx);
// SwiGLU backward: a = silu(g) * u  ->  dg = da * u * silu'(g), du = da * silu(g). g, u, dg, du: (T, F).
void swiglu_bwd(const float* da, const float* g, const float* u, int64_t n, float* dg, float* du);

// dtable[ids[t], :] += dx[t, :]
void embedding_bwd(const int32_t* ids, int64_t T, const float* dx, int64_t D, float* dtable);

// Causal multi-head attention over B sequences of T tokens (GQA: head h reads kv head h / (H / KV)).
//   q: (B*T, H*hd); k, v: (B*T, KV*hd); out: (B*T, H*hd); lse: (B, H, T) log-sum-exp of each softmax row.
//   extra: null (plain softmax) or (H) logits added to every denominator with no value (softmax-off-by-one
//   when 0, the sink_logit variant when learned).
void attention_fwd(const float* q, const float* k, const float* v, int64_t B, int64_t T, int64_t H, int64_t KV,
                   int64_t hd, float scale, const float* extra, float* out, float* lse);
// Backward from the saved q, k, v, out, lse (probabilities are recomputed, never stored: memory O(T), not
// O(T^2)). dq, dk, dv are overwritten; dextra (H) is added to when non-null.
void attention_bwd(const float* q, const float* k, const float* v, const float* out, const float* dout,
                   const float* lse, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, float scale,
                   const float* extra, float* dq, float* dk, float* dv, float* dextra);

// Softmax cross-entropy over N rows of V logits, fused with its gradient: returns the summed loss (double) of
// rows whose target is >= 0, and writes dlogits = (softmax - onehot) * grad_scale for them, 0 for ignored rows
// (target < 0). dlogits may alias logits.
double cross_entropy(const float* logits, const int32_t* targets, int64_t N, int64_t V, float grad_scale,
                     float* dlogits);

// sum of x[i]^2 in double (chunked, thread-count independent)
double sum_squares(const float* x, int64_t n);
// x[i] *= s
void scale(float* x, int64_t n, float s);

// One AdamW step exactly as torch.optim.AdamW computes it (decoupled decay first, then the moment updates):
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)      with bc1 = 1 - b1^t, bc2 = 1 - b2^t.
void adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
           float wd, double bc1, double bc2);

}  // namespace sllm::cpu::train
