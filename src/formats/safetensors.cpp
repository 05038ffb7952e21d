#include "formats/safetensors.h"

#include <cstring>              // std::memcpy
#include <filesystem>           // std::filesystem
#include <nlohmann/json.hpp>    // nlohmann::json
#include <algorithm>            // std::sort
#include <set>                  // std::set

#include "core/error.h"  // Error

namespace sllm {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxHeader = size_t(100) << 20;  // 100 MB of JSON is already absurd

bool parse_dtype(const std::string& s, DType& out) {
  if (s == "F32") out = DType::F32;
  else if (s == "F16") out = DType::F16;
  else if (s == "BF16") out = DType::BF16;
  else if (s == "I32") out = DType::I32;
  else if (s == "I64") out = DType::I64;
  else return false;
  return true;
}

}  // namespace

void SafetensorsArchive::add_file(const std::string& path) {
  auto mf = std::make_shared<MappedFile>(path);
  const size_t n = mf->size();
  if (n < 8) throw Error(path + ": truncated safetensors file (" + std::to_string(n) + " bytes, no header length)");
  uint64_t hlen = 0;
  std::memcpy(&hlen, mf->data(), 8);  // little-endian on every platform we build for
  if (hlen > kMaxHeader || hlen > n - 8)
    throw Error(path + ": safetensors header length " + std::to_string(hlen) + " exceeds the file size " +
                std::to_string(n));
  const char* hp = reinterpret_cast<const char*>(mf->data() + 8);
  json h;
  try {
    h = json::parse(hp, hp + hlen);
  } catch (const std::exception& e) {
    throw Error(path + ": safetensors header is not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!h.is_object()) throw Error(path + ": safetensors header is not a JSON object");
  const size_t data_start = 8 + size_t(hlen);
  const size_t data_size = n - data_start;
  const size_t file_idx = files_.size();
  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const std::string w = path + ": tensor '" + name + "'";
    const json& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw Error(w + ": needs dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) throw Error(w + ": dtype must be a string");
    Tensor t;
    if (!parse_dtype(e["dtype"].get<std::string>(), t.dtype))
      throw Error(w + ": unsupported dtype '" + e["dtype"].get<std::string>() + "'");
    const json& sh = e["shape"];
    if (!sh.is_array() || sh.size() > size_t(kMaxDims))
      throw Error(w + ": shape must be an array of at most " + std::to_string(kMaxDims) + " dims");
    uint64_t numel = 1;
    for (const json& d : sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        throw Error(w + ": shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t(1) << 40) || (v && numel > (uint64_t(1) << 40) / v))
        throw Error(w + ": shape " + sh.dump() + " is absurdly large");
      numel *= v;
      t.shape.d[t.shape.ndim++] = int64_t(v);
    }
    const json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error(w + ": data_offsets must be two non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size)
      throw Error(w + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                  "] out of range (data section is " + std::to_string(data_size) + " bytes)");
    if (en - b != numel * dtype_size(t.dtype))
      throw Error(w + ": data_offsets span " + std::to_string(en - b) + " bytes but shape " + sh.dump() + " of " +
                  dtype_name(t.dtype) + " needs " + std::to_string(numel * dtype_size(t.dtype)));
    if (index_.count(name)) throw Error(w + ": tensor appears twice");
    t.data = const_cast<unsigned char*>(mf->data() + data_start + b);
    if (en > b) ranges.emplace_back(b, en);
    index_[name] = Entry{t, file_idx};
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      throw Error(path + ": tensors overlap in the data section (offset " + std::to_string(ranges[i].first) + ")");
  files_.push_back(std::move(mf));
}

SafetensorsArchive SafetensorsArchive::open(const std::string& path) {
  SafetensorsArchive a;
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    const fs::path single = dir / "model.safetensors";
    const fs::path index = dir / "model.safetensors.index.json";
    if (fs::exists(single)) {
      a.add_file(single.string());
    } else if (fs::exists(index)) {
      json j;
      try {
        j = json::parse(read_text_file(index.string(), size_t(64) << 20));
      } catch (const nlohmann::json::exception& e) {
        throw Error(index.string() + ": not valid JSON (" + std::string(e.what()) + ")");
      }
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        throw Error(index.string() + ": missing object 'weight_map'");
      std::set<std::string> shards;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string()) throw Error(index.string() + ": weight_map['" + it.key() + "'] must be a file name");
        const std::string f = it.value().get<std::string>();
        if (f.empty() || f.find('/') != std::string::npos || f.find("..") != std::string::npos)
          throw Error(index.string() + ": weight_map['" + it.key() + "'] names an invalid shard '" + f + "'");
        shards.insert(f);
      }
      for (const auto& f : shards) a.add_file((dir / f).string());
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it)
        if (!a.has(it.key()))
          throw Error(index.string() + ": tensor '" + it.key() + "' is not in shard " + it.value().get<std::string>());
    } else {
      throw Error(path + ": no model.safetensors or model.safetensors.index.json in this directory");
    }
  } else {
    a.add_file(path);
  }
  return a;
}

Tensor SafetensorsArchive::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error("safetensors: missing tensor '" + name + "'");
  return it->second.t;
}

std::vector<std::string> SafetensorsArchive::names() const {
  std::vector<std::string> v;
  for (const auto& [k, e] : index_) v.push_back(k);
  return v;
}

size_t SafetensorsArchive::total_bytes() const {
  size_t n = 0;
  for (const auto& f : files_) n += f->size();
  return n;
}

const std::string& SafetensorsArchive::where(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error("safetensors: missing tensor '" + name + "'");
  return files_[it->second.file]->path();
}

}  // namespace sllm
