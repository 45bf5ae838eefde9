// kmsctl file encrypt | decrypt | rewrap | inspect — envelope encryption of files and pipes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "kms/signals.hpp"

namespace kms::cli {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kSuffix = ".kenc";
constexpr std::uint64_t kProgressThreshold = 8u << 20;

std::uint32_t parse_size(const std::string& text) {
  std::size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &pos);
  } catch (...) {
    pos = 0;
  }
  const std::string unit = text.substr(pos);
  const unsigned long long mult = unit.empty() || unit == "B"    ? 1
                                  : unit == "KiB" || unit == "K" ? 1024
                                  : unit == "MiB" || unit == "M" ? 1024 * 1024
                                                                 : 0;
  if (pos == 0 || mult == 0 || v * mult < envelope::kMinFrameSize ||
      v * mult > envelope::kMaxFrameSize) {
    throw Error(Code::usage, fmt::format("--frame-size {}: expected 1KiB to 64MiB", text),
                "write e.g. 64KiB or 1MiB");
  }
  return static_cast<std::uint32_t>(v * mult);
}

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  return fmt::format("{:.1f} {}", bytes, units[u]);
}

// A progress line on stderr, when stderr is a terminal and the input is large.
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::string name, std::optional<std::uint64_t> total)
      : enabled_(enabled && !quiet() && ::isatty(STDERR_FILENO) &&
                 (!total || *total > kProgressThreshold)),
        name_(escape_text(name)),
        total_(total),
        start_(std::chrono::steady_clock::now()) {}
  ~ProgressBar() {
    if (shown_) std::fputs("\n", stderr);
  }
  envelope::Progress callback() {
    if (!enabled_) return {};
    return [this](std::uint64_t done) { update(done); };
  }

 private:
  void update(std::uint64_t done) {
    const auto now = std::chrono::steady_clock::now();
    if (!total_ && done < kProgressThreshold) return;
    if (shown_ && now - last_ < std::chrono::milliseconds(100) && (!total_ || done < *total_))
      return;
    last_ = now;
    shown_ = true;
    const double secs = std::max(1e-3, std::chrono::duration<double>(now - start_).count());
    const double rate = double(done) / secs;
    std::string line = fmt::format("\r{}: {}", name_, human(double(done)));
    if (total_ && *total_ > 0) {
      const double frac = double(done) / double(*total_);
      const int width = 24;
      const int fill = static_cast<int>(frac * width);
      line += fmt::format(" / {} [{}{}] {:3.0f}%", human(double(*total_)), std::string(fill, '#'),
                          std::string(width - fill, ' '), frac * 100);
      if (rate > 0)
        line += fmt::format(" {}/s, {:.0f}s left", human(rate), double(*total_ - done) / rate);
    } else {
      line += fmt::format(" {}/s", human(rate));
    }
    std::fputs((line + "\033[K").c_str(), stderr);
  }

  bool enabled_;
  std::string name_;
  std::optional<std::uint64_t> total_;
  std::chrono::steady_clock::time_point start_, last_;
  bool shown_ = false;
};

struct Input {
  int fd = STDIN_FILENO;
  std::optional<std::uint64_t> size;
  ~Input() {
    if (fd != STDIN_FILENO) ::close(fd);
  }
};

std::unique_ptr<Input> open_input(const std::string& path) {
  auto in = std::make_unique<Input>();
  if (path == "-") return in;
  in->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in->fd < 0) {
    const int err = errno;
    in->fd = STDIN_FILENO;
    throw Error(err == ENOENT ? Code::not_found : Code::failed,
                fmt::format("cannot open {}: {}", path, std::strerror(err)),
                "check the input path");
  }
  struct stat st {};
  if (::fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode))
    in->size = static_cast<std::uint64_t>(st.st_size);
  return in;
}

struct OutArgs {
  std::string out, out_dir;
  bool force = false, no_progress = false, json = false, mkdir = false;
  std::vector<std::string> context;
  std::vector<std::string> inputs;
};

// Where an input's result goes: "-" is standard output.
std::string output_for(const OutArgs& a, const std::string& input, bool encrypting) {
  if (!a.out.empty()) return a.out;
  if (input == "-" && a.out_dir.empty()) return "-";
  std::string name = input == "-" ? std::string("stdin") : fs::path(input).filename().string();
  if (encrypting) {
    name += kSuffix;
  } else if (name.size() > kSuffix.size() && name.ends_with(kSuffix)) {
    name.resize(name.size() - kSuffix.size());
  } else {
    throw Error(Code::usage,
                fmt::format("{} does not end in {}: cannot name the output", input, kSuffix),
                "pass -o OUT or --out-dir DIR");
  }
  const fs::path dir = a.out_dir.empty() ? fs::path(input).parent_path() : fs::path(a.out_dir);
  return (dir / name).string();
}

void add_out(CLI::App* cmd, OutArgs& a) {
  auto* o =
      cmd->add_option("-o,--out", a.out, "Output file, or - for standard output (one input only)")
          ->type_name("FILE");
  auto* d = cmd->add_option("--out-dir", a.out_dir, "Write outputs into DIR")->type_name("DIR");
  o->excludes(d);
  cmd->add_flag("--mkdir", a.mkdir, "Create the --out-dir directory (mode 0700) if it is missing")
      ->needs(d);
  cmd->add_flag("--force", a.force, "Overwrite existing outputs");
  cmd->add_flag("--no-progress", a.no_progress, "No progress bar");
  cmd->add_flag("--json", a.json, "Print one JSON object per file (JSON Lines) on stdout");
  // One value per flag: `--context K=V FILE` must not take FILE as a second pair.
  cmd->add_option("--context", a.context, "Encryption context pair K=V (repeatable)")
      ->type_name("K=V")
      ->allow_extra_args(false);
  cmd->add_option("files", a.inputs, "Input files, or - for standard input")
      ->required()
      ->type_name("FILE");
}

// --out-dir names a directory: an existing one, or a new one with --mkdir (a typo in it would
// otherwise scatter outputs into a directory nobody meant).
void prepare_out_dir(const OutArgs& a) {
  std::error_code ec;
  const fs::file_status st = fs::status(a.out_dir, ec);
  if (fs::is_directory(st)) return;
  if (fs::exists(st)) {
    throw Error(Code::usage, fmt::format("--out-dir {} is not a directory", a.out_dir),
                "name a directory, or pass -o FILE for one output");
  }
  if (!a.mkdir) {
    throw Error(Code::usage, fmt::format("--out-dir {} does not exist", a.out_dir),
                "create it, or add --mkdir to have kmsctl create it (mode 0700)");
  }
  files::make_private_dir(a.out_dir);
}

// Runs `body` for each input with its output opened: atomically for files, or standard output.
// body gets the Service's FileOutput: an output file is published (linked into place) after its
// last frame and before the operation's end record, and taken back if that record cannot be
// written. A SIGINT, SIGTERM or SIGHUP stops the file being streamed (its output is not
// published, its record says `interrupted`), and the inputs after it are not started; kmsctl
// then exits with 128 + the signal's number.
template <class Body>
void for_each_input(const OutArgs& a, bool encrypting, Body&& body) {
  const signals::Catch catching;
  if (!a.out.empty() && a.inputs.size() > 1) {
    throw Error(Code::usage, "-o names one output but several inputs were given",
                "use --out-dir DIR");
  }
  if (!a.out_dir.empty()) prepare_out_dir(a);
  if (!a.out.empty()) {
    refuse_directory_output(a.out,
                            fmt::format(", or pass --out-dir {} to keep the input's name", a.out));
  }
  for (const std::string& input : a.inputs) {
    signals::check();
    const std::string output = output_for(a, input, encrypting);
    if (output == "-" && a.json) {
      throw Error(Code::usage, "--json prints on standard output, which carries the data here",
                  "pass -o OUT or --out-dir DIR");
    }
    if (encrypting) refuse_binary_on_terminal(output, "encrypted binary data");
    std::unique_ptr<Input> in = open_input(input);
    std::optional<files::AtomicFile> file;
    if (output != "-") file.emplace(output, a.force);
    ProgressBar bar(!a.no_progress, input, in->size);
    FileOutput publish;
    if (file) {
      publish.publish = [&] { file->commit(); };
      publish.take_back = [&] { file->take_back(); };
    }
    const FileResult r =
        body(*in, file ? file->fd() : STDOUT_FILENO, input, bar.callback(), publish);
    if (a.json) {
      nlohmann::json keys = nlohmann::json::array();
      for (const auto& [id, v] : r.keys) keys.push_back({{"key_id", id}, {"version", v}});
      std::cout << json_text({{"input", input},
                              {"output", output},
                              {"keys", keys},
                              {"plaintext_bytes", r.bytes},
                              {"frames", r.frames}})
                << '\n';
    }
  }
}

}  // namespace

void register_file(CLI::App& app, Globals& g) {
  CLI::App* file = app.add_subcommand("file", "Envelope encryption of files and pipes");
  file->require_subcommand(1);
  file->fallthrough();

  struct EncArgs : OutArgs {
    std::vector<std::string> keys, recipients;
    std::string frame_size = "1MiB";
  };
  auto ea = std::make_shared<EncArgs>();
  CLI::App* enc =
      file->add_subcommand("encrypt", "Encrypt files for vault keys and public keys (FILE.kenc)");
  enc->add_option("--key", ea->keys, "Key id or alias/NAME (repeat for several keys)")
      ->type_name("KEY")
      ->allow_extra_args(false);
  enc->add_option("--recipient", ea->recipients,
                  "A public key file (X25519 or RSA, PEM or DER) to encrypt for; with no --key, "
                  "no vault is used (repeatable)")
      ->type_name("PUBKEY")
      ->allow_extra_args(false);
  enc->add_option("--frame-size", ea->frame_size, "Plaintext bytes per frame (default 1MiB)")
      ->type_name("SIZE");
  add_out(enc, *ea);
  enc->callback([&g, ea] {
    if (ea->keys.empty() && ea->recipients.empty()) {
      throw Error(Code::usage, "a file encrypt needs a --key or a --recipient",
                  "pass --key KEY (a vault key) or --recipient PUBKEY (a public key file)");
    }
    const Context ctx = parse_pairs(ea->context, "--context");
    check_context_size(ctx);  // before the vault opens (envelope::encrypt checks it too)
    const std::uint32_t frame = parse_size(ea->frame_size);
    std::vector<Bytes> public_keys;
    for (const std::string& path : ea->recipients) {
      public_keys.push_back(read_public_key(path, "--recipient"));
      envelope::check_recipient_key(public_keys.back(), "--recipient " + escape_text(path));
    }
    for_each_input(*ea, true,
                   [&](Input& in, int out, const std::string& name, const auto& progress,
                       const FileOutput& publish) {
                     std::unique_ptr<FileSession> session;
                     if (!ea->keys.empty()) {
                       session = file_session(g, Action::file_encrypt, name, ea->keys);
                     }
                     if (!public_keys.empty()) {
                       session = with_public_key_recipients(std::move(session), public_keys);
                     }
                     return encrypt_file(*session, in.fd, out, ctx, frame, progress, publish);
                   });
  });

  auto da = std::make_shared<OutArgs>();
  CLI::App* dec = file->add_subcommand(
      "decrypt", "Decrypt files with whichever of their keys is usable (FILE.kenc -> FILE)");
  add_out(dec, *da);
  dec->callback([&g, da] {
    const Context ctx = parse_pairs(da->context, "--context");
    for_each_input(*da, false,
                   [&](Input& in, int out, const std::string& name, const auto& progress,
                       const FileOutput& publish) {
                     const auto session = file_session(g, Action::file_decrypt, name);
                     return decrypt_file(*session, in.fd, out, ctx, progress, publish);
                   });
  });

  struct RewrapArgs {
    std::string to_key;
    std::vector<std::string> inputs;
    bool json = false;
  };
  auto ra = std::make_shared<RewrapArgs>();
  CLI::App* rewrap = file->add_subcommand(
      "rewrap", "Re-wrap files' data keys under the newest key versions (header only, atomic)");
  rewrap->add_option("--to-key", ra->to_key, "Wrap for this key instead of the file's own keys")
      ->type_name("KEY");
  rewrap->add_flag("--json", ra->json, "Print one JSON object per file");
  rewrap->add_option("files", ra->inputs, "Encrypted files")->required()->type_name("FILE");
  rewrap->callback([&g, ra] {
    for (const std::string& f : ra->inputs) {
      const auto session = file_session(g, Action::file_rewrap, f);
      const FileResult r = rewrap_file(
          *session, f, ra->to_key.empty() ? std::nullopt : std::optional<std::string>(ra->to_key));
      nlohmann::json keys = nlohmann::json::array();
      for (const auto& [id, v] : r.keys) keys.push_back({{"key_id", id}, {"version", v}});
      if (ra->json) {
        std::cout << json_text({{"file", f}, {"keys", keys}}) << '\n';
      } else {
        std::string list;
        for (const auto& [id, v] : r.keys)
          list += fmt::format("{}{} v{}", list.empty() ? "" : ", ", id, v);
        note(escape_text(fmt::format("{}: rewrapped for {}", f, list)));
      }
    }
  });

  struct InspectArgs {
    std::string input;
    bool json = false;
  };
  auto ia = std::make_shared<InspectArgs>();
  CLI::App* inspect =
      file->add_subcommand("inspect", "Show an encrypted file's header (no vault or PIN needed)");
  inspect->add_option("file", ia->input, "Encrypted file")->required()->type_name("FILE");
  inspect->add_flag("--json", ia->json, "Print as JSON");
  inspect->callback([ia] {
    std::unique_ptr<Input> in = open_input(ia->input);
    Bytes rest;
    const envelope::Header h = envelope::read_header(in->fd, &rest);
    const std::optional<std::uint64_t> plaintext =
        in->size ? envelope::plaintext_size(h, *in->size) : std::nullopt;
    nlohmann::json recips = nlohmann::json::array();
    for (const auto& r : h.recipients) {
      const auto p = blob::parse(r.body);
      const auto pk = envelope::parse_public_key_recipient(r);
      if (r.type == envelope::kRecipientVaultKey && p) {
        recips.push_back({{"type", "vault-key"},
                          {"key_id", p->header.key_id},
                          {"key_version", p->header.key_version}});
      } else if (pk) {
        recips.push_back({{"type", pk->type == envelope::kRecipientX25519 ? "x25519" : "rsa-oaep"},
                          {"public_key_sha256", crypto::to_hex(pk->fingerprint)}});
      } else {
        recips.push_back({{"type", fmt::format("unknown ({})", r.type)}});
      }
    }
    nlohmann::json ctx = nlohmann::json::object();
    for (const auto& [k, v] : h.context) ctx[k] = v;
    const nlohmann::json j = {
        {"format_version", h.version},
        {"suite", h.suite == envelope::kSuiteAes256GcmHkdfSha256 ? "AES-256-GCM/HKDF-SHA256" : "?"},
        {"frame_size", h.frame_size},
        {"context", ctx},
        {"recipients", recips},
        {"header_bytes", h.encoded_size},
        {"plaintext_bytes", json_or_null(plaintext)},
    };
    if (ia->json) {
      print_json(j);
      return;
    }
    fmt::print("format       kmsctl file envelope v{} ({})\n", h.version,
               j["suite"].get<std::string>());
    fmt::print("frame size   {} bytes\n", h.frame_size);
    // The pairs as JSON would show them, each string escaped for the terminal (a file's header
    // is anyone's to write).
    std::string shown;
    for (const auto& [k, v] : h.context) {
      shown +=
          fmt::format("{}\"{}\":\"{}\"", shown.empty() ? "{" : ",", escape_text(k), escape_text(v));
    }
    fmt::print("context      {}\n", shown.empty() ? std::string("(none)") : shown + "}");
    for (const auto& r : recips) {
      fmt::print("recipient    {}\n",
                 r.contains("key_id")
                     ? fmt::format("key {} version {}", escape_text(r["key_id"].get<std::string>()),
                                   r["key_version"].get<std::uint32_t>())
                 : r.contains("public_key_sha256")
                     ? fmt::format("{} public key sha256:{}", r["type"].get<std::string>(),
                                   r["public_key_sha256"].get<std::string>())
                     : r["type"].get<std::string>());
    }
    const nlohmann::json& size = j["plaintext_bytes"];
    fmt::print("plaintext    {}\n", size.is_null()
                                        ? std::string("unknown")
                                        : fmt::format("{} bytes", size.get<std::uint64_t>()));
  });
}

}  // namespace kms::cli
