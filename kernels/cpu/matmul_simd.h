// streamllm CPU kernels: the small SIMD vocabulary the linear kernels are written in (internal header).
//
// One set of names, three implementations chosen at compile time from the same source:
//   AVX-512F (+ AVX2, FMA, F16C): 16 lanes, 32 registers -> the fast path on Zen 4 / recent Xeons
//   AVX2 + FMA + F16C:            8 lanes, 16 registers  -> CI machines without AVX-512 (x86-64-v3)
//   scalar:                       1 lane                 -> any other CPU
// The kernels in matmul_gemv.cpp and matmul_gemm.cpp are templates over these names and over the weight
// dtype, so a change to the algorithm is made once for all three.
#pragma once
#include <cstddef>  // size_t
#include <cstdint>  // int64_t, uint16_t, uint32_t
#include <cstdlib>  // std::aligned_alloc, std::free
#include <cstring>  // std::memcpy
#include <memory>   // std::unique_ptr
#include <new>      // std::bad_alloc

// SLLM_MM_AVX2: 8-lane path (also the half-width vectors of the AVX-512 path); SLLM_MM_AVX512: 16-lane path.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define SLLM_MM_AVX2 1
#if defined(__AVX512F__)
#define SLLM_MM_AVX512 1
#endif
#include <immintrin.h>  // _mm512_*, _mm256_*, _mm_*
#endif

// GCC 12's own AVX-512 intrinsics (`__m512 __Y = __Y;` placeholders) trip -W(maybe-)uninitialized once inlined
// (GCC PR 105593). Only the matmul kernel files and bench_matmul include this header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "core/dtype.h"  // DType, f16_to_f32, bf16_to_f32, dtype_bytes, kQuantBlock
#include "cpu/quant.h"   // dequantize_blocks (scalar path)

namespace sllm::cpu::mm {

#if defined(SLLM_MM_AVX512)

inline constexpr int kLanes = 16;
inline constexpr const char* kIsaName = "avx512";
using vf = __m512;
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vset1(float a) { return _mm512_set1_ps(a); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }  // a * b + c
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
// 16 x f16 / bf16 -> 16 x f32 (exact: every f16 and bf16 value is representable in f32).
inline vf vcvt_f16(__m256i h) { return _mm512_cvtph_ps(h); }
inline vf vcvt_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
inline __m256i vload_h(const uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
// Sum of the 16 lanes of each of a, b, c, d -> {sum a, sum b, sum c, sum d}.
inline __m128 hsum4(vf a, vf b, vf c, vf d) {
  auto fold = [](vf v) {  // 16 -> 8 lanes
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  };
  const __m256 ab = _mm256_hadd_ps(fold(a), fold(b));
  const __m256 cd = _mm256_hadd_ps(fold(c), fold(d));
  const __m256 abcd = _mm256_hadd_ps(ab, cd);  // {a,b,c,d} partial sums in each 128-bit half
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}
inline float hsum(vf v) { return _mm512_reduce_add_ps(v); }

#elif defined(SLLM_MM_AVX2)

inline constexpr int kLanes = 8;
inline constexpr const char* kIsaName = "avx2";
using vf = __m256;
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset1(float a) { return _mm256_set1_ps(a); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vcvt_f16(__m128i h) { return _mm256_cvtph_ps(h); }
inline vf vcvt_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
inline __m128i vload_h(const uint16_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m128 hsum4(vf a, vf b, vf c, vf d) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}
inline float hsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#else  // scalar: a "vector" of one lane

inline constexpr int kLanes = 1;
inline constexpr const char* kIsaName = "scalar";
using vf = float;
inline vf vzero() { return 0.0f; }
inline vf vset1(float a) { return a; }
inline vf vload(const float* p) { return *p; }
inline void vstore(float* p, vf v) { *p = v; }
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vadd(vf a, vf b) { return a + b; }
inline float hsum(vf v) { return v; }

#endif

// Vec<L>: L f32 lanes, for the GEMM micro-kernels, which also use half-width vectors (kLanes / 2) for short
// token blocks. On Zen 4 two 256-bit FMAs issue per cycle, so a ymm kernel keeps most of the zmm peak.
template <int L>
struct Vec;
#if defined(SLLM_MM_AVX512)
template <>
struct Vec<16> {
  using T = __m512;
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float a) { return _mm512_set1_ps(a); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
};
#endif
#if defined(SLLM_MM_AVX2)
template <>
struct Vec<8> {
  using T = __m256;
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float a) { return _mm256_set1_ps(a); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
};
template <>
struct Vec<4> {
  using T = __m128;
  static T zero() { return _mm_setzero_ps(); }
  static T set1(float a) { return _mm_set1_ps(a); }
  static T load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, T v) { _mm_storeu_ps(p, v); }
  static T fma(T a, T b, T c) { return _mm_fmadd_ps(a, b, c); }
};
#endif
template <>
struct Vec<1> {
  using T = float;
  static T zero() { return 0.0f; }
  static T set1(float a) { return a; }
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T fma(T a, T b, T c) { return a * b + c; }
};

// Calls f.template operator()<DT>() for the weight dtype wtype (the dtypes `linear` accepts; others: no call), so
// that each kernel file instantiates its templates for every weight dtype from one list.
template <class F>
inline void with_weight_dtype(DType wtype, F&& f) {
  switch (wtype) {
    case DType::F32: return f.template operator()<DType::F32>();
    case DType::F16: return f.template operator()<DType::F16>();
    case DType::BF16: return f.template operator()<DType::BF16>();
    case DType::Q8_0: return f.template operator()<DType::Q8_0>();
    case DType::Q4_0: return f.template operator()<DType::Q4_0>();
    case DType::Q4_1: return f.template operator()<DType::Q4_1>();
    default: return;  // the front-end (linear) rejects other dtypes
  }
}

// Prefetch into L2 (no-op without SSE): weight streams that the hardware prefetcher does not see coming.
inline void prefetch_l2(const void* p) {
#if defined(SLLM_MM_AVX2)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
#else
  (void)p;
#endif
}

// Bytes per stored weight (dtype_size as a constant expression; float dtypes only).
template <DType DT>
inline constexpr int kWBytes = DT == DType::F32 ? 4 : 2;

// Bytes of `row` rows of K weights of dtype DT (K a whole number of blocks for a block format).
template <DType DT>
inline int64_t rows_bytes(int64_t rows, int64_t K) {
  return rows * int64_t(dtype_bytes(DT, K));
}

// Grow-only scratch of floats aligned to a cache line, so that packed panels never split a vector load or
// store across two lines (std::vector only guarantees 16 bytes).
class AlignedScratch {
 public:
  float* get(size_t n) {
    if (n > cap_) {
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
      buf_.reset(static_cast<float*>(p));
      cap_ = bytes / sizeof(float);
    }
    return buf_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> buf_;
  size_t cap_ = 0;
};

// kLanes consecutive weights W[i .. i + kLanes) of dtype DT, as f32.
template <DType DT>
inline vf wload(const void* w, int64_t i) {
  if constexpr (DT == DType::F32) {
    return vload(static_cast<const float*>(w) + i);
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(w) + i;
#if defined(SLLM_MM_AVX2)
    if constexpr (DT == DType::F16)
      return vcvt_f16(vload_h(p));
    else
      return vcvt_bf16(vload_h(p));
#else
    if constexpr (DT == DType::F16)
      return f16_to_f32(*p);
    else
      return bf16_to_f32(*p);
#endif
  }
}

// The first n (< kLanes) of W[i ..] as f32, the other lanes zero. Used once per row for the K tail.
template <DType DT>
inline vf wload_part(const void* w, int64_t i, int n) {
  if constexpr (DT == DType::F32) {
    alignas(64) float tmp[kLanes] = {};
    std::memcpy(tmp, static_cast<const float*>(w) + i, sizeof(float) * n);
    return vload(tmp);
  } else {
    alignas(64) uint16_t tmp[kLanes] = {};
    std::memcpy(tmp, static_cast<const uint16_t*>(w) + i, sizeof(uint16_t) * n);
    return wload<DT>(tmp, 0);
  }
}

// ---- ggml block formats (cpu/quant.h) ----

// Vectors per 32-weight block.
inline constexpr int kQVecs = int(kQuantBlock) / kLanes;

// The 32 weights of the block at b (format DT) in kQVecs vectors, widened to f32: exactly the values
// dequantize_blocks gives (d * q is exact in f32; Q4_1's d * q + m is rounded once, as there).
struct QVecs {
  vf v[kQVecs];
};

template <DType DT>
__attribute__((always_inline)) inline QVecs qblock(const unsigned char* b) {
  static_assert(is_quantized(DT));
  QVecs out;
  vf* w = out.v;
#if defined(SLLM_MM_AVX2)
  auto half = [](const unsigned char* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
  };
  const vf d = vset1(half(b));
  if constexpr (DT == DType::Q8_0) {
#if defined(SLLM_MM_AVX512)
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    w[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), d);
    w[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), d);
#else
    for (int i = 0; i < 4; ++i) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * i));
      w[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
    }
#endif
  } else {
    constexpr int off = DT == DType::Q4_1 ? 4 : 2;
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + off));
#if defined(SLLM_MM_AVX512)
    // The 16 values a nibble can stand for, d q + c for q = 0..15 (one FMA: exact for Q4_0's d (q - 8), rounded
    // once for Q4_1's d q + m, as in dequantize_blocks), looked up per weight by vpermps, which reads only the low
    // 4 bits of each index: byte j widened to 32 bits indexes element j by its low nibble, and shifted right by 4
    // element j + 16 (no masking, no int -> float conversion).
    vf table;
    if constexpr (DT == DType::Q4_1) {
      uint32_t dm;
      std::memcpy(&dm, b, 4);
      const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(int(dm)));  // {d, m}
      table = vfma(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_broadcastss_ps(f),
                   _mm512_broadcastss_ps(_mm_movehdup_ps(f)));
    } else {
      table = _mm512_mul_ps(_mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7), d);
    }
    const __m512i bytes = _mm512_cvtepu8_epi32(v);
    w[0] = _mm512_permutexvar_ps(bytes, table);
    w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
#else
    const __m128i m4 = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);  // elements 0-15, 16-31
    const vf c = DT == DType::Q4_1 ? vset1(half(b + 2)) : vset1(-8.0f * half(b));  // w = d q + c (exact for Q4_0)
    w[0] = vfma(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), d, c);
    w[1] = vfma(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), d, c);
    w[2] = vfma(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), d, c);
    w[3] = vfma(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), d, c);
#endif
  }
#else
  float tmp[kQuantBlock];
  dequantize_blocks(DT, b, kQuantBlock, tmp);
  for (int i = 0; i < kQVecs; ++i) w[i] = tmp[i];
#endif
  return out;
}

// The first n (< kLanes) of x[0 ..], the other lanes zero.
inline vf xload_part(const float* x, int n) { return wload_part<DType::F32>(x, 0, n); }

// out[r] = sum of the lanes of acc[r], r < R.
template <int R>
inline void hsum_n(const vf* acc, float* out) {
  int r = 0;
#if defined(SLLM_MM_AVX2)
  for (; r + 4 <= R; r += 4) _mm_storeu_ps(out + r, hsum4(acc[r], acc[r + 1], acc[r + 2], acc[r + 3]));
#endif
  for (; r < R; ++r) out[r] = hsum(acc[r]);
}

}  // namespace sllm::cpu::mm
