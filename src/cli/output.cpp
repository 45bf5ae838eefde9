#include <cstdio>
#include <iostream>

#include "cli/app.hpp"

namespace kms::cli {

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << '\n'; }

nlohmann::json tags_json(const std::vector<std::pair<std::string, std::string>>& tags) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : tags) j[k] = v;
  return j;
}

void note(const std::string& message) { std::cerr << message << '\n'; }

}  // namespace kms::cli
