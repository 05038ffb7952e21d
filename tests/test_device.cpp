// --device parsing (src/core/device.h), shared by the inference commands and the trainer.
#include <gtest/gtest.h>

#include <string>  // std::string

#include "core/device.h"  // parse_device
#include "core/error.h"   // Error

namespace sllm {
namespace {

TEST(Device, Spellings) {
  EXPECT_FALSE(parse_device("cpu").cuda);
  EXPECT_TRUE(parse_device("cuda").cuda);
  EXPECT_EQ(parse_device("cuda").index, -1);
  EXPECT_EQ(parse_device("cuda:0").index, 0);
  EXPECT_EQ(parse_device("cuda:12").index, 12);
  for (const char* bad : {"", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:12345", "cuda0", "cuda:1 "}) {
    try {
      parse_device(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "--device: expected cpu, cuda or cuda:N, got '" + std::string(bad) + "'");
    }
  }
}

}  // namespace
}  // namespace sllm
