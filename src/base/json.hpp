// JSON helpers shared by audit parameters and `--json` output.
#pragma once

#include <optional>

#include <nlohmann/json.hpp>

#include "kms/context.hpp"

namespace kms {

// The value, or JSON null for an empty optional.
template <class T>
nlohmann::json json_or_null(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

// An encryption context as a JSON object of its pairs (audit parameters, `--json` output).
inline nlohmann::json context_json(const Context& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : c) j[k] = v;
  return j;
}

}  // namespace kms
