// Input, output and K=V parsing shared by the commands.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "base/posix.hpp"
#include "cli/app.hpp"
#include "kms/asymmetric.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"

namespace kms::cli {

SecretStage stage_option(std::string_view value) {
  if (const auto stage = parse_secret_stage(value)) return *stage;
  throw Error(Code::usage, fmt::format("--stage {} is not a stage", value),
              "give --stage current, previous or pending");
}

Context parse_pairs(const std::vector<std::string>& pairs, const char* flag) {
  Context out;
  for (const std::string& p : pairs) {
    const auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw Error(Code::usage, fmt::format("{} {}: expected KEY=VALUE", flag, p),
                  fmt::format("write {} purpose=backup (repeat the flag for more pairs)", flag));
    }
    if (!out.emplace(p.substr(0, eq), p.substr(eq + 1)).second) {
      throw Error(Code::usage, fmt::format("{} names {} twice", flag, p.substr(0, eq)),
                  "give each key once");
    }
  }
  return out;
}

SecureBytes read_input(const std::string& path, std::size_t max_bytes,
                       const std::string& too_big_hint, std::string_view flag) {
  const bool stdin_input = path.empty() || path == "-";
  const int fd = stdin_input ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(Code::usage, fmt::format("cannot read {}: {}", path, std::strerror(errno)),
                fmt::format("check the path given to {}", flag));
  }
  // The buffer is locked memory, filled and wiped whole: sized to the file when it is one
  // (a blob is a few KiB under a 64 KiB limit), else grown as the input fills it.
  std::size_t cap = std::min<std::size_t>(max_bytes, 4096);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    cap = std::min<std::size_t>(max_bytes, static_cast<std::size_t>(st.st_size));
  }
  SecureBytes buf(cap + 1);  // one byte more tells a too-large input
  std::size_t len = 0;
  for (;;) {
    if (len == buf.size()) {
      if (len > max_bytes) break;
      SecureBytes bigger(std::min(max_bytes + 1, 2 * len));
      std::memcpy(bigger.data(), buf.data(), len);
      buf = std::move(bigger);
    }
    const std::size_t room = buf.size() - len;
    int err = 0;
    const std::size_t n = posix::read_full(fd, buf.span().subspan(len), &err);
    len += n;
    if (err != 0) {
      if (!stdin_input) ::close(fd);
      throw Error(Code::failed,
                  fmt::format("cannot read {}: {}", stdin_input ? "standard input" : path,
                              std::strerror(err)));
    }
    if (n < room) break;  // the end of the input
  }
  if (!stdin_input) ::close(fd);
  if (len > max_bytes) {
    throw Error(Code::usage, fmt::format("the input is larger than {} bytes", max_bytes),
                too_big_hint);
  }
  buf.truncate(len);
  return buf;
}

Bytes read_public_key(const std::string& path, std::string_view flag) {
  const SecureBytes file =
      read_input(path, 64 * 1024, fmt::format("that is too large for a public key ({})", flag));
  auto spki = crypto::parse_public_key(file.view());
  if (!spki) {
    throw Error(Code::usage, fmt::format("{} {} is not a public key", flag, escape_text(path)),
                "pass a PEM (-----BEGIN PUBLIC KEY-----) or DER SubjectPublicKeyInfo, as "
                "`kmsctl key public` writes");
  }
  return std::move(*spki);
}

void refuse_binary_on_terminal(const std::string& path, std::string_view what) {
  if ((path.empty() || path == "-") && ::isatty(STDOUT_FILENO) == 1) {
    throw Error(Code::usage, fmt::format("refusing to write {} to a terminal", what),
                "redirect standard output to a file or a pipe, or pass -o FILE");
  }
}

void refuse_directory_output(const std::string& path, std::string_view also) {
  std::error_code ec;
  if (path != "-" && std::filesystem::is_directory(path, ec)) {
    throw Error(Code::usage, fmt::format("the output {} is a directory, not a file", path),
                fmt::format("name a file in it (-o {}/NAME){}", path, also));
  }
}

void write_output(const std::string& path, std::string_view data, bool force) {
  if (path.empty() || path == "-") {
    if (std::fwrite(data.data(), 1, data.size(), stdout) != data.size() ||
        std::fflush(stdout) != 0) {
      throw Error(Code::failed, "cannot write to standard output");
    }
    return;
  }
  refuse_directory_output(path);
  files::AtomicFile out(path, force);
  out.write(data);
  out.commit();
}

}  // namespace kms::cli
