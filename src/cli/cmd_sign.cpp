// kmsctl sign | verify | mac | verify-mac
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/asymmetric.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace {

constexpr std::size_t kMaxSignatureFile = 64 * 1024;

std::vector<std::string> signing_algorithm_names() {
  std::vector<std::string> out;
  for (const SigningAlgorithmInfo& a : signing_algorithms()) out.emplace_back(a.name);
  return out;
}

SigningAlgorithm signing_algorithm_option(const std::string& name) {
  if (const auto a = parse_signing_algorithm(name)) return *a;
  throw Error(Code::usage, fmt::format("--algorithm {} is not a signing algorithm", name),
              "see `kmsctl key specs` for each spec's algorithms");
}

// A signature or MAC as given in a file: raw bytes, or base64 text (what `sign` prints).
Bytes signature_bytes(const SecureBytes& in) {
  std::string_view text = in.chars();
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  const bool base64_text = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=';
  });
  if (base64_text) {
    if (auto decoded = crypto::from_base64(text)) return std::move(*decoded);
  }
  return Bytes(in.view().begin(), in.view().end());
}

// What a signature covers: --in FILE (a message, or with --message-type digest the digest's
// bytes) or --digest HEX.
struct SignedInput {
  std::string in, digest_hex, message_type;

  void add(CLI::App* cmd) {
    cmd->add_option("--in", in, "The message (or its digest), from a file or - for standard input")
        ->type_name("FILE");
    cmd->add_option("--digest", digest_hex, "The message's digest in hex (--message-type digest)")
        ->type_name("HEX");
    cmd->add_option("--message-type", message_type,
                    "raw: --in is the message (at most 4096 bytes); digest: its digest")
        ->check(CLI::IsMember({"raw", "digest"}));
  }

  bool is_digest() const { return !digest_hex.empty() || message_type == "digest"; }

  SecureBytes read() const {
    if (!in.empty() == !digest_hex.empty()) {
      throw Error(Code::usage,
                  in.empty() ? "give the message with --in FILE or its digest with --digest HEX"
                             : "give the message with --in or its digest with --digest, not both",
                  "--in - reads standard input");
    }
    if (!digest_hex.empty()) {
      if (message_type == "raw") {
        throw Error(Code::usage, "--digest gives a digest, not a raw message",
                    "leave out --message-type raw, or pass the message with --in");
      }
      auto d = crypto::from_hex(digest_hex);
      if (!d) throw Error(Code::usage, "--digest is not hex", "pass the digest as hex digits");
      return SecureBytes(*d);
    }
    return read_input(in, is_digest() ? 64 : crypto::kMaxSignMessage,
                      "sign a larger message by its digest: --digest HEX (e.g. of `sha256sum`)");
  }
};

// Output of a signature or MAC: raw bytes to a file, base64 text to standard output, unless
// --format says otherwise; or, with --json, {key_id, key_version, FIELD} on standard output.
struct SignatureOut {
  std::string out = "-", format;
  bool force = false, json = false;

  void add(CLI::App* cmd, const char* what, const char* field) {
    auto* o = cmd->add_option(
                     "-o,--out", out,
                     fmt::format("Write the {} to FILE (atomic), or - for standard output", what))
                  ->type_name("FILE");
    auto* f = cmd->add_option("--format", format,
                              "raw or base64 (default: raw to a file, base64 to standard output)")
                  ->check(CLI::IsMember({"raw", "base64"}));
    cmd->add_flag("--force", force, "Overwrite an existing output file");
    cmd->add_flag("--json", json,
                  fmt::format("Print {{key_id, key_version, {}}} ({} in base64) on standard output",
                              field, what))
        ->excludes(o)
        ->excludes(f);
  }

  bool raw() const { return !json && (format.empty() ? out != "-" : format == "raw"); }
  // Before the request: raw bytes are refused on a terminal.
  void check(std::string_view what) const {
    refuse_directory_output(out);
    if (raw()) refuse_binary_on_terminal(out, fmt::format("a raw {}", what));
  }
  void write(const keys::Signature& s, const char* field) const {
    if (json) {
      return print_json({{"key_id", s.key_id},
                         {"key_version", s.key_version},
                         {field, crypto::to_base64(s.value)}});
    }
    const Bytes& value = s.value;
    const bool raw = this->raw();
    write_output(out, raw ? std::string(as_chars(value)) : crypto::to_base64(value) + "\n", force);
  }
};

// A verification's answer: a line on stderr (or JSON on stdout), and Code::integrity when the
// signature or MAC is not valid.
void report(const keys::Verified& v, std::string_view what, std::string_view key, bool json) {
  if (json) {
    nlohmann::json j = {{"valid", v.valid}};
    if (!v.key_id.empty()) j["key_id"] = v.key_id;
    if (v.valid && v.key_version > 0) j["key_version"] = v.key_version;
    print_json(j);
  }
  if (!v.valid) {
    throw Error(
        Code::integrity,
        fmt::format("the {} is not valid for this message under {}", what, escape_text(key)),
        "check the message, the key and the algorithm; a changed message or a "
        "signature made by another key does not verify");
  }
  if (!json) {
    note(v.key_version > 0
             ? fmt::format("{} valid (key {} version {})", what, v.key_id, v.key_version)
             : fmt::format("{} valid", what));
  }
}

}  // namespace

void register_sign(CLI::App& app, Globals& g) {
  struct SignArgs : SignedInput, SignatureOut {
    std::string key, algorithm;
  };
  auto sa = std::make_shared<SignArgs>();
  CLI::App* cmd =
      app.add_subcommand("sign", "Sign a message (up to 4096 bytes) or a digest with a key");
  cmd->add_option("--key", sa->key, "Key id or alias/NAME (usage sign)")
      ->required()
      ->type_name("KEY");
  cmd->add_option("--algorithm", sa->algorithm, "Signing algorithm")
      ->required()
      ->check(CLI::IsMember(signing_algorithm_names()));
  sa->SignedInput::add(cmd);
  sa->SignatureOut::add(cmd, "signature", "signature");
  cmd->callback([&g, sa] {
    sa->check("signature");
    const SecureBytes input = sa->read();
    const keys::Signature s = send(g, req::Sign{sa->key, signing_algorithm_option(sa->algorithm),
                                                SecureBytes(input.view()), sa->is_digest()});
    sa->write(s, "signature");
  });
}

void register_verify(CLI::App& app, Globals& g) {
  struct VerifyArgs : SignedInput {
    std::string key, public_key, algorithm, signature;
    std::optional<std::int64_t> version;
    bool json = false;
  };
  auto va = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "verify", "Verify a signature with a key, or offline with a public key file (no vault)");
  cmd->add_option("--key", va->key, "Key id or alias/NAME in the vault")->type_name("KEY");
  cmd->add_option("--public-key", va->public_key,
                  "A public key file (PEM or DER), verified here without a vault")
      ->type_name("FILE");
  cmd->add_option("--algorithm", va->algorithm, "Signing algorithm")
      ->required()
      ->check(CLI::IsMember(signing_algorithm_names()));
  cmd->add_option("--signature", va->signature, "The signature file (raw or base64)")
      ->required()
      ->type_name("FILE");
  cmd->add_option("--key-version", va->version,
                  "Only this key version (default: each, the primary first)")
      ->check(CLI::PositiveNumber)
      ->type_name("N");
  va->SignedInput::add(cmd);
  cmd->add_flag("--json", va->json, "Print {valid, key_id, key_version} as JSON");
  cmd->callback([&g, va] {
    if (va->key.empty() == va->public_key.empty()) {
      throw Error(Code::usage, "name the key with --key KEY or --public-key FILE",
                  "one of them, not both");
    }
    const SigningAlgorithm a = signing_algorithm_option(va->algorithm);
    const SecureBytes input = va->read();
    const Bytes sig = signature_bytes(read_input(
        va->signature, kMaxSignatureFile, "that is too large for a signature", "--signature"));
    if (!va->public_key.empty()) {
      const Bytes spki = read_public_key(va->public_key, "--public-key");
      const bool ok = crypto::verify(spki, a, input.view(), va->is_digest(), sig);
      report({"", 0, ok}, "signature", va->public_key, va->json);
      return;
    }
    const keys::Verified v = send(
        g, req::Verify{va->key, a, SecureBytes(input.view()), va->is_digest(), sig, va->version});
    report(v, "signature", va->key, va->json);
  });
}

void register_mac(CLI::App& app, Globals& g) {
  struct MacArgs : SignatureOut {
    std::string key, in = "-";
  };
  auto ma = std::make_shared<MacArgs>();
  CLI::App* cmd = app.add_subcommand("mac", "Make an HMAC of a message (up to 64 KiB) with a key");
  cmd->add_option("--key", ma->key, "Key id or alias/NAME (usage mac)")
      ->required()
      ->type_name("KEY");
  cmd->add_option("--in", ma->in, "The message, from a file or - for standard input (default)")
      ->type_name("FILE");
  ma->SignatureOut::add(cmd, "MAC", "mac");
  cmd->callback([&g, ma] {
    ma->check("MAC");
    const SecureBytes message =
        read_input(ma->in, keys::kMaxMacMessage, "MAC a digest of larger data (its SHA-256)");
    ma->write(send(g, req::Mac{ma->key, SecureBytes(message.view())}), "mac");
  });
}

void register_verify_mac(CLI::App& app, Globals& g) {
  struct VerifyMacArgs {
    std::string key, in = "-", mac;
    bool json = false;
  };
  auto va = std::make_shared<VerifyMacArgs>();
  CLI::App* cmd = app.add_subcommand("verify-mac", "Verify an HMAC of a message with a key");
  cmd->add_option("--key", va->key, "Key id or alias/NAME (usage mac)")
      ->required()
      ->type_name("KEY");
  cmd->add_option("--mac", va->mac, "The MAC file (raw or base64)")->required()->type_name("FILE");
  cmd->add_option("--in", va->in, "The message, from a file or - for standard input (default)")
      ->type_name("FILE");
  cmd->add_flag("--json", va->json, "Print {valid, key_id, key_version} as JSON");
  cmd->callback([&g, va] {
    const Bytes mac = signature_bytes(
        read_input(va->mac, kMaxSignatureFile, "that is too large for a MAC", "--mac"));
    const SecureBytes message =
        read_input(va->in, keys::kMaxMacMessage, "MAC a digest of larger data (its SHA-256)");
    const keys::Verified v = send(g, req::VerifyMac{va->key, SecureBytes(message.view()), mac});
    report(v, "MAC", va->key, va->json);
  });
}

}  // namespace kms::cli
