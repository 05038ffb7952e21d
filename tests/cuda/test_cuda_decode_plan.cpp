// The split-K decode attention's plan (kernels/cuda/decode.cu): host logic, so these run without a GPU too. The
// plan must cover every key a query can admit (S + R + 1) with chunks that fit the kernel's shared memory, give
// the card enough blocks, and depend on nothing that changes as the stream advances (a captured graph keeps it).
#include <gtest/gtest.h>

#include <cstdint>  // int64_t

#include "cuda/cuda_common.cuh"  // cuda::decode_plan, cuda::DecodePlan
#include "cuda_test_util.h"       // geometry

namespace sllm {
namespace {

TEST(CudaDecodePlan, CoversEveryAdmittedKeyInBoundedChunks) {
  for (int64_t H : {1, 12, 32, 64})
    for (int64_t S : {0, 1, 4})
      for (int64_t R : {1, 3, 63, 252, 1020, 4092, 100000})
        for (int sms : {1, 132}) {
          const cpu::AttnGeometry g = geometry(H, H, 128, S, R, 1);
          const cuda::DecodePlan p = cuda::decode_plan(g, 1, sms);
          const int64_t keys = S + R + 1;
          SCOPED_TRACE(::testing::Message() << "H " << H << " S " << S << " R " << R << " SMs " << sms);
          EXPECT_GE(p.chunk, 64);
          EXPECT_LE(p.chunk, 256);  // the kernel's scores live in shared memory
          EXPECT_EQ(p.chunk % 32, 0);
          EXPECT_GE(p.splits * p.chunk, keys);         // every key is in some chunk
          EXPECT_LT((p.splits - 1) * p.chunk, keys);   // and no chunk is always empty
          EXPECT_EQ(p.scratch_floats, size_t(H * p.splits * (128 + 2)));
          EXPECT_EQ(p.counters, size_t(H));  // one per (token, head), T = 1
        }
}

TEST(CudaDecodePlan, SpreadsAShortCacheOverTheCard) {
  // 32 heads, 4+1020: ~4 blocks per SM of a 132-SM card, not 32 blocks.
  const cuda::DecodePlan p = cuda::decode_plan(geometry(32, 32, 128, 4, 1020, 1), 1, 132);
  EXPECT_GE(32 * p.splits, 4 * 132 / 2);
  // One SM: chunks as long as allowed.
  EXPECT_EQ(cuda::decode_plan(geometry(32, 32, 128, 4, 1020, 1), 1, 1).chunk, 256);
}

// Which path reads the cache: 16-byte vectors when a row is 1..64 whole vectors and both caches are 16-byte
// aligned (two vectors per lane when the row has more vectors than the largest power of two <= min(n, 32)),
// scalar loads otherwise.
TEST(CudaDecodePlan, PicksTheVectorPathByRowBytesAndAlignment) {
  alignas(16) static char buf[64];
  const void* a = buf;
  const void* mis = buf + 4;
  auto path = [&](int64_t hd, bool f16, const void* k, const void* v) {
    cpu::AttnGeometry g = geometry(4, 4, hd, 4, 60, 1);
    g.kv_f16 = f16;
    return cuda::decode_vectors_per_lane(g, k, v);
  };
  EXPECT_EQ(path(128, true, a, a), 1);   // 16 vectors: 16 lanes per key
  EXPECT_EQ(path(128, false, a, a), 1);  // 32 vectors: a warp per key
  EXPECT_EQ(path(64, true, a, a), 1);
  EXPECT_EQ(path(80, true, a, a), 2);    // 10 vectors over 8 lanes
  EXPECT_EQ(path(256, false, a, a), 2);  // 64 vectors over 32 lanes
  EXPECT_EQ(path(12, false, a, a), 2);   // 3 vectors over 2 lanes
  EXPECT_EQ(path(8, true, a, a), 1);     // one vector
  EXPECT_EQ(path(6, true, a, a), 0);     // 12-byte rows
  EXPECT_EQ(path(12, true, a, a), 0);    // 24-byte rows
  EXPECT_EQ(path(512, false, a, a), 0);  // 128 vectors: more than the kernel holds
  EXPECT_EQ(path(128, true, mis, a), 0);
  EXPECT_EQ(path(128, true, a, mis), 0);
}

}  // namespace
}  // namespace sllm
