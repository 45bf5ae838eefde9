#include <cstdio>
#include <iostream>

#include "cli/app.hpp"

namespace kms::cli {

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << '\n'; }

void note(const std::string& message) { std::cerr << message << '\n'; }

}  // namespace kms::cli
