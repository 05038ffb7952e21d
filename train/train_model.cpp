// The trainable decoder: parameter layout, initialisation, forward and backward (see train_model.h).
#include "train/train_model.h"

#include <algorithm>  // std::max, std::min
#include <cmath>      // std::sqrt, std::exp
#include <cstring>    // std::memcpy
#include <limits>     // std::numeric_limits
#include <utility>    // std::move

#include "core/error.h"     // Error
#include "cpu/kernels.h"    // rope_tables
#include "model/weights.h"  // for_each_weight
#include "train/rng.h"      // Rng

namespace sllm::train {

namespace {

float* fp(const Tensor& t) { return t.empty() ? nullptr : static_cast<float*>(t.data); }

void check_trainable(const ModelConfig& c) {
  auto need = [&](bool ok, const char* what) {
    if (!ok) throw Error(std::string("train: ") + family_name(c.family) + " config is not trainable: " + what);
  };
  need(c.family == Family::GPTNeoX || c.family == Family::Llama, "only the gpt_neox and llama blocks can be trained");
  need(c.pos == PosKind::RoPE && !c.rope_interleaved, "needs rotate-half RoPE");
  need(c.clip_qkv == 0.0f && !c.shared_norm, "clip_qkv / shared norms are not supported");
  if (c.family == Family::GPTNeoX) {
    need(c.norm == NormKind::LayerNorm && c.parallel_residual && c.qkv == QkvLayout::Grouped &&
             c.n_kv_heads == c.n_heads && c.mlp == MlpKind::GeluErf && !c.tied_head,
         "the Pythia block is LayerNorm, parallel residual, fused QKV, GELU, untied head");
  } else {
    need(c.norm == NormKind::RMSNorm && !c.parallel_residual && c.qkv == QkvLayout::Separate &&
             c.mlp == MlpKind::SwiGLU,
         "the Llama block is RMSNorm, sequential residual, separate Q/K/V, SwiGLU");
  }
}

}  // namespace

// Saved activations and scratch for one (B, T).
struct TrainModel::Acts {
  TrainBackend& be;
  int64_t B, T;
  int32_t* ids = nullptr;
  int32_t* tgt = nullptr;
  std::vector<int32_t> tgt_host;
  struct L {
    DevBuf x_in, n1, st1, n2, st2, x_mid, q, k, v, att, lse, g, u, a;
  };
  std::vector<L> layers;
  DevBuf xf, nf, stf, logits, cos, sin;
  DevBuf qkv, tmp, tmp2, dres, dn, datt, dq, dk, dv, dqkv, dA, dG, dU;
  Acts(TrainBackend& b, int64_t B_, int64_t T_) : be(b), B(B_), T(T_) {}
  ~Acts() {
    if (ids) be.free_ids(ids);
    if (tgt) be.free_ids(tgt);
  }
};

TrainModel::TrainModel(const ModelConfig& cfg, TrainBackend& be) : cfg_(cfg), be_(be) {
  cfg_.validate("train config");
  check_trainable(cfg_);
  // Layout: the visitor's order; optional tensors (biases) exist for GPT-NeoX only; a tied head has no tensor.
  const bool biases = cfg_.family == Family::GPTNeoX;
  ModelWeights probe;
  for_each_weight(cfg_, probe, [&](const WeightSlot& s) {
    if (s.name.empty() || (s.dst == &probe.lm_head && cfg_.tied_head)) return;
    if (!s.required && !biases) return;
    ParamInfo p{s.name, s.shape, n_, s.shape.numel(), s.shape.ndim >= 2};
    n_ += p.numel;
    table_.push_back(std::move(p));
  });
  params_ = DevBuf(be_, size_t(n_));
  grads_ = DevBuf(be_, size_t(n_));
  bind(pw_, params_.get());
  bind(gw_, grads_.get());
  // Transposed copies of the matrices whose input gradient is needed.
  std::vector<const Tensor*> mats;
  for (const auto& L : pw_.layers)
    for (const Tensor* t : {&L.wqkv, &L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      if (!t->empty()) mats.push_back(t);
  mats.push_back(&pw_.lm_head);
  int64_t total = 0;
  for (const Tensor* t : mats) total += t->numel();
  wt_ = DevBuf(be_, size_t(total));
  int64_t off = 0;
  for (const Tensor* t : mats) {
    wt_map_.push_back({fp(*t), wt_.get() + off});
    off += t->numel();
  }
  if (cfg_.sink == SinkKind::ZeroSink) zero_logit_ = DevBuf(be_, size_t(cfg_.n_heads));
}

TrainModel::~TrainModel() { delete acts_; }

const float* TrainModel::wt_of(const Tensor& w) const {
  for (const auto& [src, dst] : wt_map_)
    if (src == w.data) return dst;
  throw Error("train: internal error: no transpose for a matrix");
}

void TrainModel::refresh_transposes() {
  if (wt_valid_) return;
  std::vector<const Tensor*> mats;
  auto find = [&](const float* p) -> const Tensor* {
    for (const auto& L : pw_.layers)
      for (const Tensor* t : {&L.wqkv, &L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
        if (t->data == p) return t;
    return &pw_.lm_head;
  };
  for (const auto& [src, dst] : wt_map_) {
    const Tensor* t = find(src);
    be_.transpose(src, t->shape[0], t->shape[1], dst);
  }
  wt_valid_ = true;
}

void TrainModel::init(const InitOptions& o) {
  Rng rng(o.seed);
  const double D = double(cfg_.hidden);
  const double small = std::sqrt(2.0 / (5.0 * D));
  const double wang = 2.0 / (double(cfg_.n_layers) * std::sqrt(D));
  std::vector<float> host(static_cast<size_t>(n_));
  for (const ParamInfo& p : table_) {
    float* dst = host.data() + p.offset;
    const bool is_bias = p.name.ends_with(".bias"), is_sink = p.name.ends_with(".sinks");
    if (!p.matrix) {
      const bool norm_weight = !is_bias && !is_sink;
      for (int64_t i = 0; i < p.numel; ++i) dst[i] = norm_weight ? 1.0f : 0.0f;
      continue;
    }
    const bool out_proj = p.name.find("o_proj") != std::string::npos ||
                          p.name.find("attention.dense") != std::string::npos ||
                          p.name.find("down_proj") != std::string::npos ||
                          p.name.find("dense_4h_to_h") != std::string::npos;
    const double sd = out_proj ? wang : small;
    for (int64_t i = 0; i < p.numel; ++i) dst[i] = float(rng.normal() * sd);
  }
  be_.upload(params_.get(), host.data(), host.size());
  params_changed();
}

void TrainModel::load_weights(const Model& m) {
  std::vector<float> host(static_cast<size_t>(n_));
  ModelWeights& src = const_cast<ModelWeights&>(m.w);
  size_t i = 0;
  for_each_weight(m.cfg, src, [&](const WeightSlot& s) {
    if (i >= table_.size() || s.name != table_[i].name) {
      if (!s.dst->empty() && !(s.dst == &src.lm_head && cfg_.tied_head) && !s.name.empty())
        throw Error("train: the loaded model has a tensor '" + s.name + "' this config does not train");
      return;
    }
    const ParamInfo& p = table_[i++];
    if (s.dst->empty()) throw Error("train: the loaded model has no tensor '" + p.name + "'");
    if (!(s.dst->shape == p.shape))
      throw Error("train: tensor '" + p.name + "' has shape " + s.dst->shape.str() + ", expected " + p.shape.str());
    to_f32(s.dst->data, s.dst->dtype, size_t(p.numel), host.data() + p.offset);
  });
  if (i != table_.size()) throw Error("train: the loaded model lacks tensor '" + table_[i].name + "'");
  be_.upload(params_.get(), host.data(), host.size());
  params_changed();
}

Model TrainModel::to_model() const {
  Model m;
  m.cfg = cfg_;
  m.storage = DType::F32;
  m.source = "trainer";
  Buffer buf(size_t(n_) * sizeof(float));
  be_.download(static_cast<float*>(buf.data()), params_.get(), size_t(n_));
  float* base = static_cast<float*>(buf.data());
  size_t i = 0;
  for_each_weight(cfg_, m.w, [&](const WeightSlot& s) {
    if (i < table_.size() && s.name == table_[i].name) *s.dst = Tensor{base + table_[i++].offset, DType::F32, s.shape};
  });
  if (cfg_.tied_head) m.w.lm_head = m.w.embed;
  m.w.owned.push_back(std::move(buf));
  return m;
}

void TrainModel::bind(ModelWeights& w, float* base) const {
  size_t i = 0;
  for_each_weight(cfg_, w, [&](const WeightSlot& s) {
    if (i < table_.size() && s.name == table_[i].name) {
      *s.dst = Tensor{base + table_[i].offset, DType::F32, s.shape};
      ++i;
    }
  });
  if (cfg_.tied_head) w.lm_head = w.embed;
}

void TrainModel::zero_grads() { be_.zero(grads_.get(), size_t(n_)); }

double TrainModel::forward_backward_added(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T,
                                          float weight, int64_t* n_scored) {
  if (spare_.size() != size_t(n_)) spare_ = DevBuf(be_, size_t(n_));
  // The running sum moves to spare_; this micro-batch's gradient is built in the zeroed grads_ buffer.
  auto swap_buffers = [&] {
    std::swap(grads_, spare_);
    bind(gw_, grads_.get());
  };
  swap_buffers();
  be_.zero(grads_.get(), size_t(n_));
  double loss = 0;
  try {
    loss = forward_backward(ids, targets, B, T, weight, n_scored);
  } catch (...) {
    swap_buffers();
    throw;
  }
  be_.add(spare_.get(), grads_.get(), n_, spare_.get());  // sum + g, whole
  swap_buffers();
  return loss;
}

void TrainModel::ensure_acts(int64_t B, int64_t T) {
  if (acts_ && acts_->B == B && acts_->T == T) return;
  delete acts_;
  acts_ = nullptr;
  auto* a = new Acts(be_, B, T);
  const ModelConfig& c = cfg_;
  const int64_t BT = B * T, D = c.hidden, F = c.ffn, qd = c.q_dim(), kvd = c.kv_dim();
  auto buf = [&](int64_t n) { return DevBuf(be_, size_t(n)); };
  a->ids = be_.alloc_ids(size_t(BT));
  a->tgt = be_.alloc_ids(size_t(BT));
  const bool llama = c.family == Family::Llama;
  a->layers.resize(size_t(c.n_layers));
  for (auto& L : a->layers) {
    L.x_in = buf(BT * D);
    L.n1 = buf(BT * D);
    L.st1 = buf(BT * 2);
    L.n2 = buf(BT * D);
    L.st2 = buf(BT * 2);
    if (llama) L.x_mid = buf(BT * D);
    L.q = buf(BT * qd);
    L.k = buf(BT * kvd);
    L.v = buf(BT * kvd);
    L.att = buf(BT * qd);
    L.lse = buf(B * c.n_heads * T);
    L.g = buf(BT * F);  // llama: gate pre-activation; neox: up pre-activation
    if (llama) L.u = buf(BT * F);
    L.a = buf(BT * F);  // the MLP's activated hidden state
  }
  a->xf = buf(BT * D);
  a->nf = buf(BT * D);
  a->stf = buf(BT * 2);
  a->logits = buf(BT * c.vocab_size);
  // RoPE tables for positions 0..T-1 (every sample starts at position 0).
  const int64_t half = c.rot_dims / 2;
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t;
  std::vector<float> cs(size_t(T * half)), sn(size_t(T * half));
  if (half > 0) cpu::rope_tables(pos.data(), T, c.rot_dims, c.rope_theta, cs.data(), sn.data());
  a->cos = buf(T * half + 1);
  a->sin = buf(T * half + 1);
  be_.upload(a->cos.get(), cs.data(), cs.size());
  be_.upload(a->sin.get(), sn.data(), sn.size());
  if (!llama) a->qkv = buf(BT * c.qkv_dim());
  a->tmp = buf(BT * D);
  a->tmp2 = buf(BT * D);
  a->dres = buf(BT * D);
  a->dn = buf(BT * D);
  a->datt = buf(BT * qd);
  a->dq = buf(BT * qd);
  a->dk = buf(BT * kvd);
  a->dv = buf(BT * kvd);
  if (!llama) a->dqkv = buf(BT * c.qkv_dim());
  a->dA = buf(BT * F);
  a->dG = buf(BT * F);
  if (llama) a->dU = buf(BT * F);
  acts_ = a;
}

double TrainModel::forward(const int32_t* ids_host, const int32_t* targets_host, int64_t B, int64_t T, bool train,
                           float weight, int64_t* n_scored) {
  const ModelConfig& c = cfg_;
  const int64_t BT = B * T, D = c.hidden, F = c.ffn, V = c.vocab_size, H = c.n_heads, KV = c.n_kv_heads;
  const int64_t hd = c.head_dim, qd = c.q_dim(), kvd = c.kv_dim();
  for (int64_t i = 0; i < BT; ++i)
    if (ids_host[i] < 0 || ids_host[i] >= V || targets_host[i] >= V)
      throw Error("train: token id " + std::to_string(std::max(ids_host[i], targets_host[i])) +
                  " is outside the model's vocabulary (" + std::to_string(V) + ")");
  ensure_acts(B, T);
  Acts& a = *acts_;
  be_.upload_ids(a.ids, ids_host, size_t(BT));
  be_.upload_ids(a.tgt, targets_host, size_t(BT));
  int64_t scored = 0;
  for (int64_t i = 0; i < BT; ++i) scored += targets_host[i] >= 0;
  if (n_scored) *n_scored = scored;
  const bool llama = c.family == Family::Llama, layer_norm = c.norm == NormKind::LayerNorm;
  const float scale = c.scale();

  be_.embedding(a.ids, BT, fp(pw_.embed), D, a.layers[0].x_in.get());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& W = pw_.layers[size_t(l)];
    Acts::L& S = a.layers[size_t(l)];
    float* x = S.x_in.get();
    float* x_next = l + 1 < c.n_layers ? a.layers[size_t(l + 1)].x_in.get() : a.xf.get();
    be_.norm(layer_norm, x, fp(W.attn_norm_w), fp(W.attn_norm_b), c.norm_eps, BT, D, S.n1.get(), S.st1.get());
    if (llama) {
      be_.linear(S.n1.get(), BT, D, fp(W.wq), qd, fp(W.bq), S.q.get());
      be_.linear(S.n1.get(), BT, D, fp(W.wk), kvd, fp(W.bk), S.k.get());
      be_.linear(S.n1.get(), BT, D, fp(W.wv), kvd, fp(W.bv), S.v.get());
    } else {  // grouped layout, one q per group: per head [q_h | k_h | v_h]
      be_.linear(S.n1.get(), BT, D, fp(W.wqkv), c.qkv_dim(), fp(W.bqkv), a.qkv.get());
      for (int64_t h = 0; h < H; ++h) {
        const float* src = a.qkv.get() + h * 3 * hd;
        be_.copy2d(S.q.get() + h * hd, qd, src, c.qkv_dim(), BT, hd);
        be_.copy2d(S.k.get() + h * hd, kvd, src + hd, c.qkv_dim(), BT, hd);
        be_.copy2d(S.v.get() + h * hd, kvd, src + 2 * hd, c.qkv_dim(), BT, hd);
      }
    }
    if (c.rot_dims > 0) {
      be_.rope(S.q.get(), B, T, H, hd, c.rot_dims, a.cos.get(), a.sin.get(), false);
      be_.rope(S.k.get(), B, T, KV, hd, c.rot_dims, a.cos.get(), a.sin.get(), false);
    }
    const float* extra = c.sink == SinkKind::SinkLogit ? fp(W.sinks) : zero_logit_.get();
    be_.attention(S.q.get(), S.k.get(), S.v.get(), B, T, H, KV, hd, scale, extra, S.att.get(), S.lse.get());
    be_.linear(S.att.get(), BT, qd, fp(W.wo), D, fp(W.bo), a.tmp.get());
    const float* mlp_in = x;
    if (llama) {
      be_.add(x, a.tmp.get(), BT * D, S.x_mid.get());
      mlp_in = S.x_mid.get();
    }
    be_.norm(layer_norm, mlp_in, fp(W.mlp_norm_w), fp(W.mlp_norm_b), c.norm_eps, BT, D, S.n2.get(), S.st2.get());
    if (llama) {
      be_.linear(S.n2.get(), BT, D, fp(W.w_gate), F, nullptr, S.g.get());
      be_.linear(S.n2.get(), BT, D, fp(W.w_up), F, nullptr, S.u.get());
      be_.swiglu(S.g.get(), S.u.get(), BT, F, S.a.get());
      be_.linear(S.a.get(), BT, F, fp(W.w_down), D, nullptr, a.tmp2.get());
      be_.add(S.x_mid.get(), a.tmp2.get(), BT * D, x_next);
    } else {
      be_.linear(S.n2.get(), BT, D, fp(W.w_up), F, fp(W.b_up), S.g.get());
      be_.gelu(S.g.get(), BT * F, S.a.get());
      be_.linear(S.a.get(), BT, F, fp(W.w_down), D, fp(W.b_down), a.tmp2.get());
      be_.add(x, a.tmp.get(), BT * D, x_next);
      be_.add(x_next, a.tmp2.get(), BT * D, x_next);
    }
  }
  be_.norm(layer_norm, a.xf.get(), fp(pw_.final_norm_w), fp(pw_.final_norm_b), c.norm_eps, BT, D, a.nf.get(),
           a.stf.get());
  be_.linear(a.nf.get(), BT, D, fp(pw_.lm_head), V, nullptr, a.logits.get());
  const float gscale = scored > 0 ? weight / float(scored) : 0.0f;
  const double sum = be_.cross_entropy(a.logits.get(), a.tgt, BT, V, train ? gscale : 0.0f, a.logits.get());
  return sum;
}

void TrainModel::backward(int64_t B, int64_t T) {
  const ModelConfig& c = cfg_;
  Acts& a = *acts_;
  const int64_t BT = B * T, D = c.hidden, F = c.ffn, V = c.vocab_size, H = c.n_heads, KV = c.n_kv_heads;
  const int64_t hd = c.head_dim, qd = c.q_dim(), kvd = c.kv_dim();
  const bool llama = c.family == Family::Llama, layer_norm = c.norm == NormKind::LayerNorm;
  const float scale = c.scale();
  refresh_transposes();
  // Head and final norm: dlogits (in a.logits) -> d nf -> d xf (into dres).
  be_.linear_bwd(a.logits.get(), a.nf.get(), BT, D, wt_of(pw_.lm_head), V, a.dn.get(), false, fp(gw_.lm_head), nullptr);
  be_.norm_bwd(layer_norm, a.dn.get(), a.xf.get(), fp(pw_.final_norm_w), a.stf.get(), BT, D, a.dres.get(), false,
               fp(gw_.final_norm_w), fp(gw_.final_norm_b));
  for (int64_t l = c.n_layers - 1; l >= 0; --l) {
    const LayerWeights& W = pw_.layers[size_t(l)];
    const LayerWeights& G = gw_.layers[size_t(l)];
    Acts::L& S = a.layers[size_t(l)];
    float* dres = a.dres.get();  // d(layer output); becomes d(layer input)
    // MLP branch (its input is x_mid for Llama, x_in for the parallel block).
    be_.linear_bwd(dres, S.a.get(), BT, F, wt_of(W.w_down), D, a.dA.get(), false, fp(G.w_down), fp(G.b_down));
    if (llama) {
      be_.swiglu_bwd(a.dA.get(), S.g.get(), S.u.get(), BT * F, a.dG.get(), a.dU.get());
      be_.linear_bwd(a.dG.get(), S.n2.get(), BT, D, wt_of(W.w_gate), F, a.dn.get(), false, fp(G.w_gate), nullptr);
      be_.linear_bwd(a.dU.get(), S.n2.get(), BT, D, wt_of(W.w_up), F, a.dn.get(), true, fp(G.w_up), nullptr);
      // dres (= d x_out) also flows straight to x_mid; add the norm's contribution.
      be_.norm_bwd(false, a.dn.get(), S.x_mid.get(), fp(W.mlp_norm_w), S.st2.get(), BT, D, dres, true,
                   fp(G.mlp_norm_w), nullptr);
    } else {
      be_.gelu_bwd(a.dA.get(), S.g.get(), BT * F, a.dG.get());
      be_.linear_bwd(a.dG.get(), S.n2.get(), BT, D, wt_of(W.w_up), F, a.dn.get(), false, fp(G.w_up), fp(G.b_up));
      // Parallel block: x_in receives dres directly, the MLP norm's and (below) the attention norm's gradients.
      // The attention branch still needs dres as it is, so the MLP norm's gradient waits in tmp2.
      be_.norm_bwd(true, a.dn.get(), S.x_in.get(), fp(W.mlp_norm_w), S.st2.get(), BT, D, a.tmp2.get(), false,
                   fp(G.mlp_norm_w), fp(G.mlp_norm_b));
    }
    // Attention branch: d(attn out) = dres.
    be_.linear_bwd(dres, S.att.get(), BT, qd, wt_of(W.wo), D, a.datt.get(), false, fp(G.wo), fp(G.bo));
    const float* extra = c.sink == SinkKind::SinkLogit ? fp(W.sinks) : zero_logit_.get();
    be_.attention_bwd(S.q.get(), S.k.get(), S.v.get(), S.att.get(), a.datt.get(), S.lse.get(), B, T, H, KV, hd, scale,
                      extra, a.dq.get(), a.dk.get(), a.dv.get(),
                      c.sink == SinkKind::SinkLogit ? fp(G.sinks) : nullptr);
    if (c.rot_dims > 0) {
      be_.rope(a.dq.get(), B, T, H, hd, c.rot_dims, a.cos.get(), a.sin.get(), true);
      be_.rope(a.dk.get(), B, T, KV, hd, c.rot_dims, a.cos.get(), a.sin.get(), true);
    }
    if (llama) {
      be_.linear_bwd(a.dq.get(), S.n1.get(), BT, D, wt_of(W.wq), qd, a.dn.get(), false, fp(G.wq), fp(G.bq));
      be_.linear_bwd(a.dk.get(), S.n1.get(), BT, D, wt_of(W.wk), kvd, a.dn.get(), true, fp(G.wk), fp(G.bk));
      be_.linear_bwd(a.dv.get(), S.n1.get(), BT, D, wt_of(W.wv), kvd, a.dn.get(), true, fp(G.wv), fp(G.bv));
    } else {
      for (int64_t h = 0; h < H; ++h) {
        float* dst = a.dqkv.get() + h * 3 * hd;
        be_.copy2d(dst, c.qkv_dim(), a.dq.get() + h * hd, qd, BT, hd);
        be_.copy2d(dst + hd, c.qkv_dim(), a.dk.get() + h * hd, kvd, BT, hd);
        be_.copy2d(dst + 2 * hd, c.qkv_dim(), a.dv.get() + h * hd, kvd, BT, hd);
      }
      be_.linear_bwd(a.dqkv.get(), S.n1.get(), BT, D, wt_of(W.wqkv), c.qkv_dim(), a.dn.get(), false, fp(G.wqkv),
                     fp(G.bqkv));
    }
    be_.norm_bwd(layer_norm, a.dn.get(), S.x_in.get(), fp(W.attn_norm_w), S.st1.get(), BT, D, dres, true,
                 fp(G.attn_norm_w), fp(G.attn_norm_b));
    if (!llama) be_.add(dres, a.tmp2.get(), BT * D, dres);
  }
  be_.embedding_bwd(a.ids, BT, a.dres.get(), D, fp(gw_.embed));
}

double TrainModel::forward_backward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, float weight,
                                    int64_t* n_scored) {
  int64_t n = 0;
  const double sum = forward(ids, targets, B, T, true, weight, &n);
  if (n_scored) *n_scored = n;
  if (n == 0) return 0.0;
  backward(B, T);
  return sum / double(n);
}

double TrainModel::forward_loss(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, int64_t* n_scored) {
  return forward(ids, targets, B, T, false, 0.0f, n_scored);
}

namespace {
// exp(scale * q . k - lse): one softmax probability, recomputed as the attention kernel computes it (an f32
// score; only the summation order of the dot product may differ).
double prob(const float* q, const float* k, int64_t hd, float scale, float lse) {
  float s = 0;
  for (int64_t d = 0; d < hd; ++d) s += q[d] * k[d];
  return std::exp(double(scale * s) - double(lse));
}
}  // namespace

double TrainModel::attention_probability(int64_t layer, int64_t b, int64_t h, int64_t t, int64_t j) const {
  const ModelConfig& c = cfg_;
  if (!acts_) throw Error("attention_probability: no forward pass yet");
  const int64_t B = acts_->B, T = acts_->T, H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim;
  SLLM_CHECK(layer >= 0 && layer < c.n_layers && b >= 0 && b < B && h >= 0 && h < H && j >= 0 && j <= t && t < T,
             "attention_probability: index out of range");
  const Acts::L& S = acts_->layers[size_t(layer)];
  std::vector<float> q(static_cast<size_t>(hd)), k(static_cast<size_t>(hd));
  float lse = 0;
  be_.download(q.data(), S.q.get() + ((b * T + t) * H + h) * hd, size_t(hd));
  be_.download(k.data(), S.k.get() + ((b * T + j) * KV + h / (H / KV)) * hd, size_t(hd));
  be_.download(&lse, S.lse.get() + (b * H + h) * T + t, 1);
  return prob(q.data(), k.data(), hd, c.scale(), lse);
}

struct TrainModel::SavedSoftmax {
  int64_t B, T, H, KV, hd;
  float scale;
  std::vector<float> q, k, lse;  // (B, T, H, hd), (B, T, KV, hd), (B, H, T)
  float lse_at(int64_t b, int64_t h, int64_t t) const { return lse[size_t((b * H + h) * T + t)]; }
  // p(query t -> key j) of head h in row b.
  double p(int64_t b, int64_t h, int64_t t, int64_t j) const {
    return prob(&q[size_t(((b * T + t) * H + h) * hd)], &k[size_t(((b * T + j) * KV + h / (H / KV)) * hd)], hd, scale,
                lse_at(b, h, t));
  }
};

void TrainModel::for_each_layer_softmax(const char* what,
                                        const std::function<void(int64_t, const SavedSoftmax&)>& f) const {
  const ModelConfig& c = cfg_;
  if (!acts_) throw Error(std::string(what) + ": no forward pass yet");
  SavedSoftmax s{acts_->B, acts_->T, c.n_heads, c.n_kv_heads, c.head_dim, c.scale(), {}, {}, {}};
  s.q.resize(size_t(s.B * s.T * s.H * s.hd));
  s.k.resize(size_t(s.B * s.T * s.KV * s.hd));
  s.lse.resize(size_t(s.B * s.H * s.T));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const Acts::L& S = acts_->layers[size_t(l)];
    be_.download(s.q.data(), S.q.get(), s.q.size());
    be_.download(s.k.data(), S.k.get(), s.k.size());
    be_.download(s.lse.data(), S.lse.get(), s.lse.size());
    f(l, s);
  }
}

std::vector<double> TrainModel::first_token_attention(int64_t from, int64_t count) const {
  if (count < 1) throw Error("first_token_attention: count must be >= 1");
  std::vector<double> out;
  for_each_layer_softmax("first_token_attention", [&](int64_t, const SavedSoftmax& s) {
    const int64_t t0 = std::max<int64_t>(0, std::min(from, s.T - 1));
    double sum = 0;
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t t = t0; t < s.T; ++t)
          for (int64_t j = 0; j < std::min(count, t + 1); ++j) sum += s.p(b, h, t, j);
    out.push_back(sum / double(s.B * s.H * (s.T - t0)));
  });
  return out;
}

std::vector<std::vector<double>> TrainModel::attention_maps(int64_t n) const {
  std::vector<std::vector<double>> out;
  for_each_layer_softmax("attention_maps", [&](int64_t, const SavedSoftmax& s) {
    const int64_t m = std::max<int64_t>(1, std::min(n, s.T));
    std::vector<double> map(size_t(m * m), std::numeric_limits<double>::quiet_NaN());
    for (int64_t t = 0; t < m; ++t)
      for (int64_t j = 0; j <= t; ++j) {
        double sum = 0;
        for (int64_t b = 0; b < s.B; ++b)
          for (int64_t h = 0; h < s.H; ++h) sum += s.p(b, h, t, j);
        map[size_t(t * m + j)] = sum / double(s.B * s.H);
      }
    out.push_back(std::move(map));
  });
  return out;
}

std::vector<double> TrainModel::extra_logit_attention(int64_t from) const {
  const ModelConfig& c = cfg_;
  if (acts_ && c.sink != SinkKind::ZeroSink && c.sink != SinkKind::SinkLogit) return {};
  std::vector<float> extra(size_t(c.n_heads), 0.0f);  // zero_sink's logit is 0
  std::vector<double> out;
  for_each_layer_softmax("extra_logit_attention", [&](int64_t l, const SavedSoftmax& s) {
    if (c.sink == SinkKind::SinkLogit) be_.download(extra.data(), fp(pw_.layers[size_t(l)].sinks), extra.size());
    const int64_t t0 = std::max<int64_t>(0, std::min(from, s.T - 1));
    double sum = 0;
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t t = t0; t < s.T; ++t) sum += std::exp(double(extra[size_t(h)]) - double(s.lse_at(b, h, t)));
    out.push_back(sum / double(s.B * s.H * (s.T - t0)));
  });
  return out;
}

double TrainModel::flops_per_step(int64_t B, int64_t T) const {
  const ModelConfig& c = cfg_;
  double mm = 0;  // multiply-adds per token in weight products (the embedding lookup is not a product)
  for (const ParamInfo& p : table_)
    if (p.matrix && p.name != table_.front().name) mm += double(p.numel);
  if (c.tied_head) mm += double(c.vocab_size * c.hidden);
  const double tokens = double(B * T);
  const double attn = 6.0 * double(c.n_layers * c.n_heads * c.head_dim) * double(T);
  return tokens * (6.0 * mm + attn);
}

}  // namespace sllm::train
