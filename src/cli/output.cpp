#include <cstdio>
#include <iostream>

#include "cli/app.hpp"

namespace kms::cli {

// A string that is not UTF-8 (a description written by an older kmsctl or edited in the vault
// file, a file name) becomes U+FFFD rather than an exception: one bad value cannot make a
// listing fail for everyone.
std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void print_json(const nlohmann::json& j) { std::cout << json_text(j, 2) << '\n'; }

void print_list_json(nlohmann::json items, const std::optional<std::string>& next) {
  print_json({{"items", std::move(items)}, {"next", json_or_null(next)}});
}

nlohmann::json tags_json(const std::vector<std::pair<std::string, std::string>>& tags) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : tags) j[k] = v;
  return j;
}

bool& quiet() {
  static bool q = false;
  return q;
}

void note(const std::string& message) {
  if (!quiet()) std::cerr << message << '\n';
}

void say(const std::string& message) { std::cerr << message << '\n'; }

}  // namespace kms::cli
