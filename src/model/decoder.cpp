// The forward pass. One code path for Llama, GPT-NeoX, Falcon (7B and new architecture) and MPT; the family only
// changes which norm, which QKV layout, which residual wiring, which MLP and which position scheme is used.
#include "model/decoder.h"

#include <algorithm>  // std::min, std::find
#include <cmath>      // std::exp, std::log
#include <cstring>    // std::memcpy

#include "core/error.h"  // Error

namespace sllm {

Decoder::Decoder(const Model& m, Backend& be, int64_t max_chunk, std::optional<bool> fuse)
    : m_(m), be_(be), C_(max_chunk) {
  if (max_chunk < 1) throw Error("decoder: max_chunk must be >= 1");
  const ModelConfig& c = m.cfg;
  const size_t C = size_t(max_chunk), D = size_t(c.hidden), F = size_t(c.ffn);
  x_ = buf(C * D);
  xn_ = buf(C * D);
  xn2_ = buf(C * D);
  const bool fused = fuse.value_or(!be_.host_memory());
  qkv_ = c.qkv == QkvLayout::Separate && !fused ? nullptr : buf(C * size_t(c.qkv_dim()));
  q_ = buf(C * size_t(c.q_dim()));
  qs_ = buf(C * size_t(c.qkv_dim()));  // the sink query keeps q's row stride, up to a fused row's
  k_ = buf(C * size_t(c.kv_dim()));
  v_ = buf(C * size_t(c.kv_dim()));
  att_ = buf(C * size_t(c.q_dim()));
  proj_ = buf(C * D);
  mlp_ = buf(C * D);
  h1_ = buf(C * F * (c.mlp == MlpKind::SwiGLU && fused ? 2 : 1));  // [gate | up] rows when fused
  h2_ = c.mlp == MlpKind::SwiGLU ? buf(C * F) : nullptr;
  logits_ = buf(C * size_t(c.vocab_size));
  const size_t half = size_t(c.rot_dims / 2);
  cos_.resize(C * half);
  sin_.resize(C * half);
  cos_s_.resize(C * half);
  sin_s_.resize(C * half);
  pos_.resize(C);
  if (be_.host_memory()) {
    w_ = &m.w;
    cos_d_ = cos_.data();
    sin_d_ = sin_.data();
    cos_s_d_ = cos_s_.data();
    sin_s_d_ = sin_s_.data();
    alibi_d_ = m.alibi.empty() ? nullptr : m.alibi.data();
    if (c.sink == SinkKind::ZeroSink) {
      zero_logit_.assign(size_t(c.n_heads), 0.0f);
      zero_logit_d_ = zero_logit_.data();
    }
  } else {
    if (m.resident == &be_) {
      w_ = &m.w;
    } else {
      place_weights();
      w_ = &dw_;
    }
    // A step's inputs travel in one upload: [cos | sin | cos_s | sin_s | ids], T rows each (forward()).
    stage_.resize(4 * C * half + C);
    stage_d_ = buf(4 * C * half + C);
    if (!m.alibi.empty()) {
      float* a = buf(m.alibi.size());
      be_.upload(a, m.alibi.data(), m.alibi.size() * sizeof(float));
      alibi_d_ = a;
    }
    if (c.sink == SinkKind::ZeroSink) {
      zero_logit_.assign(size_t(c.n_heads), 0.0f);
      float* z = buf(zero_logit_.size());
      be_.upload(z, zero_logit_.data(), zero_logit_.size() * sizeof(float));
      zero_logit_d_ = z;
    }
    logits_host_.resize(C * size_t(c.vocab_size));
  }
  if (fused) fuse_weights();
}

// Copies every weight into the backend's memory once (through the visitor, so names and shapes stay in one place).
void Decoder::place_weights() {
  std::vector<const Tensor*> src;
  ModelWeights& mw = const_cast<ModelWeights&>(m_.w);
  for_each_weight(m_.cfg, mw, [&](const WeightSlot& s) { src.push_back(s.dst); });
  size_t i = 0;
  for_each_weight(m_.cfg, dw_, [&](const WeightSlot& s) {
    const Tensor& t = *src[i++];
    if (t.empty()) return;
    if (s.dst == &dw_.lm_head && t.data == m_.w.embed.data) {  // tied head: share the embedding
      *s.dst = dw_.embed;
      return;
    }
    // Block formats (Q8_0 / Q4_0 / Q4_1) have CPU kernels only: a device gets them widened to f16 on the host.
    ModelWeights widened;
    const Tensor& u = is_quantized(t.dtype) ? retype(t, DType::F16, widened) : t;
    void* p = be_.alloc(u.bytes());
    allocs_.push_back(p);
    be_.upload(p, u.data, u.bytes());
    *s.dst = Tensor{p, u.dtype, u.shape};
  });
}

void Decoder::fuse_weights() {
  const ModelConfig& c = m_.cfg;
  fused_.assign(size_t(c.n_layers), FusedLayer{});
  // Rows of a matrix (or elements of a vector), gathered in order into one new tensor of the parts' dtype; a view
  // without a copy when the pieces are already one block in that order (a resident model laid out so).
  struct Piece {
    const Tensor* t;
    int64_t row0, rows;
  };
  auto gather = [&](const std::vector<Piece>& pieces) -> Tensor {
    const Tensor& t0 = *pieces.front().t;
    const bool vec = t0.shape.ndim == 1;
    const int64_t width = vec ? 1 : c.hidden;
    int64_t rows = 0;
    for (const Piece& pc : pieces) {
      if (pc.t->empty() || pc.t->dtype != t0.dtype || pc.t->shape.ndim != t0.shape.ndim ||
          (!vec && pc.t->shape[1] != c.hidden))
        return Tensor{};
      rows += pc.rows;
    }
    const size_t row_bytes = dtype_bytes(t0.dtype, width);
    auto at = [&](const Piece& pc) { return static_cast<const char*>(pc.t->data) + size_t(pc.row0) * row_bytes; };
    const Shape shape = vec ? Shape{rows} : Shape{rows, c.hidden};
    bool adjacent = true;
    const char* next = at(pieces.front());
    for (const Piece& pc : pieces) {
      adjacent = adjacent && at(pc) == next;
      next = at(pc) + size_t(pc.rows) * row_bytes;
    }
    if (adjacent) return Tensor{const_cast<char*>(at(pieces.front())), t0.dtype, shape};
    void* p = be_.alloc(size_t(rows) * row_bytes);
    allocs_.push_back(p);
    size_t off = 0;
    for (const Piece& pc : pieces) {
      be_.copy(static_cast<char*>(p) + off, at(pc), size_t(pc.rows) * row_bytes);
      off += size_t(pc.rows) * row_bytes;
    }
    return Tensor{p, t0.dtype, shape};
  };
  auto whole = [](const Tensor& t) { return Piece{&t, 0, t.shape[0]}; };
  // Our own copies of the parts are freed once gathered (a resident model's belong to its owner).
  auto drop = [&](std::initializer_list<Tensor*> parts) {
    if (w_ != &dw_) return;
    for (Tensor* t : parts) {
      auto it = std::find(allocs_.begin(), allocs_.end(), t->data);
      if (it != allocs_.end()) {
        be_.release(*it);
        allocs_.erase(it);
      }
      *t = Tensor{};
    }
  };
  const int64_t hd = c.head_dim, gq = c.n_heads / c.n_kv_heads, gw = (gq + 2) * hd;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = const_cast<ModelWeights*>(w_)->layers[size_t(l)];
    FusedLayer& f = fused_[size_t(l)];
    if (c.qkv == QkvLayout::Separate && L.bq.empty() && L.bk.empty() && L.bv.empty()) {
      f.qkv = gather({whole(L.wq), whole(L.wk), whole(L.wv)});
      if (!f.qkv.empty() && f.qkv.data != L.wq.data) drop({&L.wq, &L.wk, &L.wv});
    } else if (c.qkv == QkvLayout::Grouped) {
      // Per-group [q x gq, k, v] rows reordered to [all q | all k | all v], so the projection's output is used
      // through strided views instead of 3 copies per KV group (the bias likewise).
      for (Tensor* src : {&L.wqkv, &L.bqkv}) {
        if (src->empty()) continue;
        std::vector<Piece> pieces;
        for (int64_t g = 0; g < c.n_kv_heads; ++g) pieces.push_back({src, g * gw, gq * hd});
        for (int64_t g = 0; g < c.n_kv_heads; ++g) pieces.push_back({src, g * gw + gq * hd, hd});
        for (int64_t g = 0; g < c.n_kv_heads; ++g) pieces.push_back({src, g * gw + (gq + 1) * hd, hd});
        (src == &L.wqkv ? f.qkv : f.bqkv) = gather(pieces);
      }
      if (!f.qkv.empty() && f.qkv.data != L.wqkv.data) {
        if (!f.bqkv.empty() && f.bqkv.data != L.bqkv.data) drop({&L.bqkv});
        drop({&L.wqkv});
      }
    }
    if (c.mlp == MlpKind::SwiGLU) {
      f.gate_up = gather({whole(L.w_gate), whole(L.w_up)});
      if (!f.gate_up.empty() && f.gate_up.data != L.w_gate.data) drop({&L.w_gate, &L.w_up});
    }
  }
}

Decoder::~Decoder() {
  for (void* p : allocs_) be_.release(p);
}

float* Decoder::buf(size_t n) {
  void* p = be_.alloc(n * sizeof(float));
  allocs_.push_back(p);
  ws_bytes_ += n * sizeof(float);
  return static_cast<float*>(p);
}

void Decoder::attention_block(const LayerWeights& L, int64_t l, const float* xn, int64_t T, KVCache& cache,
                              const PendingNorm* pre) {
  const ModelConfig& c = m_.cfg;
  const int64_t D = c.hidden, hd = c.head_dim, qd = c.q_dim(), kvd = c.kv_dim(), W = c.qkv_dim();
  // 1. Projections: q (T, H, hd), k, v (T, Hkv, hd), each with its own row stride: views into the fused output
  //    [q | k | v] when the weights are fused or Blocked, contiguous copies for the Grouped layout.
  float *q = q_, *k = k_, *v = v_;
  int64_t ldq = qd, ldk = kvd, ldv = kvd;
  const bool have_fused = !fused_.empty() && !fused_[size_t(l)].qkv.empty();  // in [q | k | v] order
  const Tensor& fused = have_fused ? fused_[size_t(l)].qkv : L.wqkv;
  const Tensor& fused_b = have_fused ? fused_[size_t(l)].bqkv : L.bqkv;
  if (c.qkv == QkvLayout::Separate && !have_fused) {
    if (pre) {  // three readers: normalise once
      be_.norm(pre->op, pre->x, pre->w, pre->b, c.norm_eps, T, D, xn_);
      xn = xn_;
    }
    be_.linear(xn, T, D, D, L.wq.data, L.wq.dtype, qd, L.bq.as<float>(), q_, qd);
    be_.linear(xn, T, D, D, L.wk.data, L.wk.dtype, kvd, L.bk.as<float>(), k_, kvd);
    be_.linear(xn, T, D, D, L.wv.data, L.wv.dtype, kvd, L.bv.as<float>(), v_, kvd);
  } else {
    if (pre)
      be_.norm_linear(pre->op, pre->x, pre->w, pre->b, c.norm_eps, T, D, xn_, fused.data, fused.dtype, W,
                      fused_b.as<float>(), qkv_, W);
    else
      be_.linear(xn, T, D, D, fused.data, fused.dtype, W, fused_b.as<float>(), qkv_, W);
    if (c.clip_qkv > 0) be_.clamp(qkv_, T * W, -c.clip_qkv, c.clip_qkv);
    if (have_fused || c.qkv == QkvLayout::Blocked) {  // [all q | all k | all v]: strided views, no copies
      q = qkv_, k = qkv_ + qd, v = qkv_ + qd + kvd;
      ldq = ldk = ldv = W;
    } else {  // Grouped: per kv group [q x gq, k, v]
      const int64_t gq = c.n_heads / c.n_kv_heads, gw = (gq + 2) * hd;
      for (int64_t g = 0; g < c.n_kv_heads; ++g) {
        be_.copy_rows(qkv_ + g * gw, W, q_ + g * gq * hd, qd, T, gq * hd);
        be_.copy_rows(qkv_ + g * gw + gq * hd, W, k_ + g * hd, kvd, T, hd);
        be_.copy_rows(qkv_ + g * gw + (gq + 1) * hd, W, v_ + g * hd, kvd, T, hd);
      }
    }
  }
  // 2. Positions (keys at their absolute position; the query twice, see kv_cache.h) and the cache write, one op;
  //    then attention over sinks + window (the new tokens included).
  const float* q_sink = q;
  if (c.pos == PosKind::RoPE && c.rot_dims > 0) {
    const int64_t S = cache.geometry().sinks, R = cache.geometry().window, t0 = cache.n_past();
    const bool two = S > 0 && t0 + T - 1 > S + R;
    if (two) q_sink = qs_;  // qs_ has q's row stride (it is sized for the widest, the fused [q | k | v] row)
    be_.rope_store(q, ldq, two ? qs_ : nullptr, k, ldk, v, ldv, T, t0, c.rot_dims, c.rope_interleaved, cos_d_,
                   sin_d_, cos_s_d_, sin_s_d_, cache.k(l), cache.v(l), cache.geometry());
  } else {
    be_.kv_store(k, ldk, v, ldv, T, cache.n_past(), cache.k(l), cache.v(l), cache.geometry());
  }
  be_.attention(q, q_sink, ldq, T, cache.n_past(), cache.k(l), cache.v(l), cache.geometry(), c.scale(),
                alibi_d_, c.sink == SinkKind::SinkLogit ? L.sinks.as<float>() : zero_logit_d_, att_);
  be_.linear_add(att_, T, qd, qd, L.wo.data, L.wo.dtype, D, L.bo.as<float>(), x_, D, proj_);  // x += proj
}

void Decoder::mlp_block(const LayerWeights& L, int64_t l, const float* xn, int64_t T, const PendingNorm* pre) {
  const ModelConfig& c = m_.cfg;
  const int64_t D = c.hidden, F = c.ffn;
  if (!fused_.empty() && !fused_[size_t(l)].gate_up.empty()) {  // one GEMM for [gate | up], rows 2F wide
    const Tensor& gu = fused_[size_t(l)].gate_up;
    if (pre)
      be_.norm_linear_swiglu(pre->op, pre->x, pre->w, pre->b, c.norm_eps, T, D, xn_, gu.data, gu.dtype, F, h2_, h1_);
    else
      be_.linear_swiglu(xn, T, D, D, gu.data, gu.dtype, F, h2_, h1_);
    be_.linear_add(h2_, T, F, F, L.w_down.data, L.w_down.dtype, D, L.b_down.as<float>(), x_, D, mlp_);
    return;
  }
  if (pre) {  // not fused: normalise first
    be_.norm(pre->op, pre->x, pre->w, pre->b, c.norm_eps, T, D, xn_);
    xn = xn_;
  }
  if (c.mlp == MlpKind::SwiGLU) {
    be_.linear(xn, T, D, D, L.w_gate.data, L.w_gate.dtype, F, nullptr, h1_, F);
    be_.linear(xn, T, D, D, L.w_up.data, L.w_up.dtype, F, nullptr, h2_, F);
    be_.swiglu(h1_, F, h2_, F, T, F, h1_);
  } else {
    be_.linear(xn, T, D, D, L.w_up.data, L.w_up.dtype, F, L.b_up.as<float>(), h1_, F);
    be_.activation(c.mlp == MlpKind::GeluErf ? ActOp::GeluErf : c.mlp == MlpKind::GeluTanh ? ActOp::GeluTanh
                                                                                           : ActOp::Relu,
                   h1_, T * F);
  }
  be_.linear_add(h1_, T, F, F, L.w_down.data, L.w_down.dtype, D, L.b_down.as<float>(), x_, D, mlp_);  // x += mlp
}

const float* Decoder::forward(const int32_t* ids, int64_t T, KVCache& cache, Logits mode) {
  const ModelConfig& c = m_.cfg;
  if (T < 1 || T > C_ || T > cache.max_chunk())
    throw Error("decoder: chunk of " + std::to_string(T) + " tokens exceeds the maximum of " +
                std::to_string(std::min(C_, cache.max_chunk())));
  for (int64_t i = 0; i < T; ++i)
    if (ids[i] < 0 || ids[i] >= c.vocab_size)
      throw Error("decoder: token id " + std::to_string(ids[i]) + " outside the vocabulary (size " +
                  std::to_string(c.vocab_size) + ")");
  const int64_t t0 = cache.n_past();
  const int64_t S = cache.geometry().sinks, R = cache.geometry().window;

  // The step's inputs: RoPE tables (absolute positions, and the sink query's capped ones) and the token ids. On a
  // host backend the kernels read cos_ .. sin_s_ and ids directly. On a device they are written into one staging
  // block, [cos | sin | cos_s | sin_s | ids] with T rows each, and sent in one upload (not five): the offsets
  // depend on T only, so the T = 1 decode graph finds them at the same addresses every step.
  const bool host = be_.host_memory();
  const int64_t th = T * (c.rot_dims / 2);
  float* cos_h = host ? cos_.data() : stage_.data();
  float* sin_h = host ? sin_.data() : stage_.data() + th;
  float* cos_s_h = host ? cos_s_.data() : stage_.data() + 2 * th;
  float* sin_s_h = host ? sin_s_.data() : stage_.data() + 3 * th;
  if (!host) {
    cos_d_ = stage_d_;
    sin_d_ = stage_d_ + th;
    cos_s_d_ = stage_d_ + 2 * th;
    sin_s_d_ = stage_d_ + 3 * th;
    ids_d_ = reinterpret_cast<int32_t*>(stage_d_ + 4 * th);
  }
  if (c.pos == PosKind::RoPE && c.rot_dims > 0) {
    for (int64_t i = 0; i < T; ++i) pos_[size_t(i)] = cache.pos0() + t0 + i;
    cpu::rope_tables(pos_.data(), T, c.rot_dims, c.rope_theta, cos_h, sin_h);
    if (S > 0 && t0 + T - 1 > S + R) {
      for (int64_t i = 0; i < T; ++i) pos_[size_t(i)] = cache.pos0() + std::min(t0 + i, S + R);
      cpu::rope_tables(pos_.data(), T, c.rot_dims, c.rope_theta, cos_s_h, sin_s_h);
    }
  }
  const int32_t* ids_b = ids;
  if (!host) {
    std::memcpy(stage_.data() + 4 * th, ids, size_t(T) * sizeof(int32_t));
    be_.upload(stage_d_, stage_.data(), size_t(4 * th + T) * sizeof(float));
    ids_b = ids_d_;
  }
  const int64_t n_logits = mode == Logits::None                                   ? 0
                           : mode == Logits::All || mode == Logits::AllOnDevice ? T
                                                                                : 1;

  // The decode step's op sequence is fixed once the cache is past the point where the sink query starts using
  // its own rotation (S > 0: t0 > S + R; without sinks it never changes): then it can be a graph.
  const bool steady = T == 1 && be_.has_graphs() && graphs_ && (S == 0 || t0 > S + R);
  const GraphKey key{cache.id(), n_logits > 0};
  if (steady && graph_id_ != 0 && graph_key_ == key && be_.graph_launch(graph_id_, t0)) {
    ++graph_replays_;
  } else if (steady && warm_key_ == key) {  // the second steady step: capture, then replay it
    graph_id_ = 0;
    be_.graph_begin();
    try {
      run_ops(ids_b, T, cache, n_logits);
    } catch (...) {
      be_.graph_end(false);
      throw;
    }
    graph_id_ = be_.graph_end(true);
    graph_key_ = key;
    if (!be_.graph_launch(graph_id_, t0)) throw Error("decoder: the decode graph just captured did not launch");
    ++graph_replays_;
  } else {  // eager; a first steady step also sizes every scratch buffer the capture will need. A graph that
            // another decoder on the same backend replaced lands here too, and is captured again next step.
    run_ops(ids_b, T, cache, n_logits);
    warm_key_ = steady ? key : GraphKey{};
  }
  cache.advance(T);
  if (n_logits == 0) return nullptr;
  if (be_.host_memory() || mode == Logits::LastOnDevice || mode == Logits::AllOnDevice) return logits_;
  be_.download(logits_host_.data(), logits_, size_t(n_logits * c.vocab_size) * sizeof(float));
  return logits_host_.data();
}

void Decoder::run_ops(const int32_t* ids_b, int64_t T, KVCache& cache, int64_t n_logits) {
  const ModelConfig& c = m_.cfg;
  const int64_t D = c.hidden;
  be_.embedding(ids_b, T, w_->embed.data, w_->embed.dtype, D, x_);
  const NormOp nop = c.norm == NormKind::RMSNorm ? NormOp::RMS : NormOp::Layer;
  // On a device with fused projections, each norm of a sequential block is folded into the one GEMV that reads it.
  const bool fold = !be_.host_memory() && !fused_.empty();
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_->layers[size_t(l)];
    // Both blocks add their output into x_ (Backend::linear_add): x = (x + attn) + mlp.
    if (c.parallel_residual) {  // both blocks read the layer's input: its norms first, then the adds
      be_.norm(nop, x_, L.attn_norm_w.as<float>(), L.attn_norm_b.as<float>(), c.norm_eps, T, D, xn_);
      const float* mlp_in = xn_;
      if (!c.shared_norm) {
        be_.norm(nop, x_, L.mlp_norm_w.as<float>(), L.mlp_norm_b.as<float>(), c.norm_eps, T, D, xn2_);
        mlp_in = xn2_;
      }
      attention_block(L, l, xn_, T, cache);
      mlp_block(L, l, mlp_in, T);
    } else if (fold) {  // each norm folded into the GEMV that reads it (Backend::norm_linear)
      const PendingNorm pa{nop, x_, L.attn_norm_w.as<float>(), L.attn_norm_b.as<float>()};
      attention_block(L, l, nullptr, T, cache, &pa);
      const PendingNorm pm{nop, x_, L.mlp_norm_w.as<float>(), L.mlp_norm_b.as<float>()};
      mlp_block(L, l, nullptr, T, &pm);
    } else {
      be_.norm(nop, x_, L.attn_norm_w.as<float>(), L.attn_norm_b.as<float>(), c.norm_eps, T, D, xn_);
      attention_block(L, l, xn_, T, cache);
      be_.norm(nop, x_, L.mlp_norm_w.as<float>(), L.mlp_norm_b.as<float>(), c.norm_eps, T, D, xn_);
      mlp_block(L, l, xn_, T);
    }
  }
  if (n_logits == 0) return;
  const int64_t first = T - n_logits;
  be_.norm(nop, x_ + first * D, w_->final_norm_w.as<float>(), w_->final_norm_b.as<float>(), c.norm_eps, n_logits,
           D, xn_);
  be_.linear(xn_, n_logits, D, D, w_->lm_head.data, w_->lm_head.dtype, c.vocab_size, nullptr, logits_,
             c.vocab_size);
}

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double s = 0;
  for (int64_t i = 0; i < vocab; ++i) s += std::exp(double(logits[i]) - mx);
  return std::log(s) + mx - double(logits[target]);
}

}  // namespace sllm
