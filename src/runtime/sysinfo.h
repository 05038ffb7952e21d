// streamllm: process facts for the tables we print (resident memory).
#pragma once
#include <cstddef>  // size_t

namespace sllm {

size_t rss_bytes();       // current resident set (VmRSS), 0 if unknown
size_t peak_rss_bytes();  // high-water mark (VmHWM), 0 if unknown
// Resets the high-water mark to the current RSS (Linux: writes 5 to /proc/self/clear_refs); false if unsupported.
bool reset_peak_rss();

}  // namespace sllm
