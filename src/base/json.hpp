// JSON helpers shared by audit parameters and `--json` output.
#pragma once

#include <optional>

#include <nlohmann/json.hpp>

namespace kms {

// The value, or JSON null for an empty optional.
template <class T>
nlohmann::json json_or_null(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

}  // namespace kms
