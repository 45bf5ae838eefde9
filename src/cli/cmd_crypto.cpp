// kmsctl encrypt | decrypt | re-encrypt | data-key generate | random
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace {

constexpr std::size_t kMaxBlobInput = 64 * 1024;

// A blob as given: raw (starts with the magic) or base64 text.
Bytes blob_from_input(const SecureBytes& in) {
  const ByteView raw = in.view();
  if (raw.size() >= blob::kBlobMagic.size() &&
      std::equal(blob::kBlobMagic.begin(), blob::kBlobMagic.end(), raw.begin())) {
    return Bytes(raw.begin(), raw.end());
  }
  std::string_view text = in.chars();
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  // Not base64 either: handed on as it is, so the service rejects it (and audits the attempt).
  auto decoded = crypto::from_base64(text);
  return decoded ? std::move(*decoded) : Bytes(raw.begin(), raw.end());
}

std::string blob_text(const Bytes& blob, bool binary) {
  return binary ? std::string(as_chars(blob)) : crypto::to_base64(blob) + "\n";
}

// --algorithm of encrypt and decrypt (default: the kmsctl ciphertext blob).
EncryptionAlgorithm encryption_algorithm_option(const std::string& name) {
  if (name.empty()) return EncryptionAlgorithm::symmetric_default;
  if (const auto a = parse_encryption_algorithm(name)) return *a;
  throw Error(Code::usage, fmt::format("--algorithm {} is not an encryption algorithm", name),
              "SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_256 or SM2PKE");
}

void add_algorithm(CLI::App* cmd, std::string& algorithm) {
  cmd->add_option("--algorithm", algorithm,
                  "SYMMETRIC_DEFAULT (default: a ciphertext blob), RSAES_OAEP_SHA_256 or SM2PKE "
                  "(public-key encryption of small data)")
      ->check(CLI::IsMember({"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256", "SM2PKE"}));
}

struct IoArgs {
  std::string in = "-", out = "-";
  bool force = false;
  std::vector<std::string> context;
};

void add_io(CLI::App* cmd, IoArgs& a) {
  cmd->add_option("--in", a.in, "Input file, or - for standard input (default)")->type_name("FILE");
  cmd->add_option("-o,--out", a.out,
                  "Output file (atomic, 0600), or - for standard output (default)")
      ->type_name("FILE");
  cmd->add_flag("--force", a.force, "Overwrite an existing output file");
  cmd->add_option("--context", a.context, "Encryption context pair K=V (repeatable)")
      ->type_name("K=V");
}

}  // namespace

void register_encrypt(CLI::App& app, Globals& g) {
  struct EncryptArgs : IoArgs {
    std::string key, algorithm;
    bool binary = false;
  };
  auto ea = std::make_shared<EncryptArgs>();
  CLI::App* enc = app.add_subcommand(
      "encrypt", "Encrypt up to 4096 bytes under a key into a self-describing ciphertext blob");
  enc->add_option("--key", ea->key, "Key id or alias/NAME")->required()->type_name("KEY");
  add_io(enc, *ea);
  add_algorithm(enc, ea->algorithm);
  enc->add_flag("--binary", ea->binary, "Write the raw blob instead of base64 text");
  enc->callback([&g, ea] {
    refuse_directory_output(ea->out);
    if (ea->binary) refuse_binary_on_terminal(ea->out, "a binary ciphertext blob");
    const Context ctx = parse_pairs(ea->context, "--context");
    check_context_size(ctx);
    const SecureBytes pt = read_input(ea->in, keys::kMaxEncryptPlaintext,
                                      "encrypt larger data with `kmsctl file encrypt` "
                                      "(envelope encryption)");
    const Bytes blob = send(g, req::Encrypt{ea->key, SecureBytes(pt.view()), ctx,
                                            encryption_algorithm_option(ea->algorithm)});
    write_output(ea->out, blob_text(blob, ea->binary), ea->force);
  });
}

void register_decrypt(CLI::App& app, Globals& g) {
  struct DecryptArgs : IoArgs {
    std::string key, algorithm;
    std::optional<std::int64_t> version;
  };
  auto da = std::make_shared<DecryptArgs>();
  CLI::App* dec = app.add_subcommand(
      "decrypt",
      "Decrypt a ciphertext blob (the key is named inside it), or with --key and "
      "--algorithm a public-key ciphertext");
  add_io(dec, *da);
  dec->add_option("--key", da->key, "The key of a public-key ciphertext (id or alias/NAME)")
      ->type_name("KEY");
  add_algorithm(dec, da->algorithm);
  dec->add_option("--key-version", da->version,
                  "Only this key version (default: each, the primary first)")
      ->check(CLI::PositiveNumber)
      ->type_name("N");
  dec->callback([&g, da] {
    refuse_directory_output(da->out);
    const Context ctx = parse_pairs(da->context, "--context");
    const EncryptionAlgorithm a = encryption_algorithm_option(da->algorithm);
    if (a != EncryptionAlgorithm::symmetric_default && da->key.empty()) {
      throw Error(Code::usage, fmt::format("a {} ciphertext names no key", da->algorithm),
                  "name the key with --key KEY");
    }
    const Bytes blob = blob_from_input(read_input(da->in, kMaxBlobInput, "that is not a blob"));
    const keys::Decrypted d = send(g, req::Decrypt{blob, ctx, a, da->key, da->version});
    write_output(da->out, d.plaintext.chars(), da->force);
  });
}

void register_reencrypt(CLI::App& app, Globals& g) {
  struct ReencryptArgs : IoArgs {
    std::string to_key;
    std::vector<std::string> to_context;
    bool binary = false;
  };
  auto ra = std::make_shared<ReencryptArgs>();
  CLI::App* re = app.add_subcommand(
      "re-encrypt", "Move a ciphertext to another key, version or context without revealing it");
  re->add_option("--to-key", ra->to_key,
                 "Key id or alias/NAME to encrypt under (its primary version)")
      ->required()
      ->type_name("KEY");
  add_io(re, *ra);
  re->add_option("--to-context", ra->to_context,
                 "New encryption context pair K=V (repeatable; default: keep the --context pairs)")
      ->type_name("K=V");
  re->add_flag("--binary", ra->binary, "Write the raw blob instead of base64 text");
  re->callback([&g, ra] {
    refuse_directory_output(ra->out);
    if (ra->binary) refuse_binary_on_terminal(ra->out, "a binary ciphertext blob");
    const Context ctx = parse_pairs(ra->context, "--context");
    // Without --to-context the blob keeps its context: dropping it silently would unbind it.
    const Context to_ctx =
        ra->to_context.empty() ? ctx : parse_pairs(ra->to_context, "--to-context");
    check_context_size(to_ctx);
    const Bytes blob = blob_from_input(read_input(ra->in, kMaxBlobInput, "that is not a blob"));
    const Bytes out = send(g, req::ReEncrypt{blob, ctx, ra->to_key, to_ctx});
    write_output(ra->out, blob_text(out, ra->binary), ra->force);
  });
}

void register_data_key(CLI::App& app, Globals& g) {
  CLI::App* dk = app.add_subcommand("data-key", "Data keys for envelope encryption");
  dk->require_subcommand(1);
  dk->fallthrough();
  struct DataKeyArgs {
    std::string key, spec = "AES_256";
    std::vector<std::string> context;
    bool no_plaintext = false, json = false;
  };
  auto ka = std::make_shared<DataKeyArgs>();
  CLI::App* gen =
      dk->add_subcommand("generate", "A random data key, in plaintext and encrypted under KEY");
  gen->add_option("--key", ka->key, "Key id or alias/NAME")->required()->type_name("KEY");
  gen->add_option("--spec", ka->spec, "AES_256 (32 bytes) or AES_128 (16 bytes)")
      ->check(CLI::IsMember({"AES_256", "AES_128"}));
  gen->add_option("--context", ka->context, "Encryption context pair K=V (repeatable)")
      ->type_name("K=V");
  gen->add_flag("--no-plaintext", ka->no_plaintext, "Return only the encrypted data key");
  gen->add_flag("--json", ka->json, "Print {key_id, plaintext, ciphertext_blob} as JSON");
  gen->callback([&g, ka] {
    const Context ctx = parse_pairs(ka->context, "--context");
    check_context_size(ctx);
    const DataKey d =
        send(g, req::GenerateDataKey{ka->key, ka->spec == "AES_128" ? 16u : 32u, ctx});
    const std::string blob = crypto::to_base64(d.ciphertext_blob);
    if (ka->json) {
      nlohmann::json j = {
          {"key_id", d.key_id}, {"key_version", d.key_version}, {"ciphertext_blob", blob}};
      if (!ka->no_plaintext) j["plaintext"] = crypto::to_base64(d.plaintext.view());
      print_json(j);
      return;
    }
    fmt::print("key_id           {}\n", d.key_id);
    if (!ka->no_plaintext)
      fmt::print("plaintext        {}\n", crypto::to_base64(d.plaintext.view()));
    fmt::print("ciphertext_blob  {}\n", blob);
  });
}

void register_random(CLI::App& app, Globals& g) {
  struct RandomArgs {
    std::size_t bytes = 0;
    std::string format = "base64";
  };
  auto rnd = std::make_shared<RandomArgs>();
  CLI::App* random = app.add_subcommand("random", "Random bytes from the CSPRNG");
  random->add_option("--bytes", rnd->bytes, "How many (1-1024)")
      ->required()
      ->check(CLI::Range(std::size_t{1}, keys::kMaxRandomBytes));
  random->add_option("--format", rnd->format, "base64 (default), hex or raw")
      ->check(CLI::IsMember({"base64", "hex", "raw"}));
  random->callback([&g, rnd] {
    if (rnd->format == "raw") refuse_binary_on_terminal("-", "raw random bytes");
    const Bytes r = send(g, req::Random{static_cast<std::uint32_t>(rnd->bytes)});
    if (rnd->format == "raw") {
      write_output("-", as_chars(r), false);
    } else {
      fmt::print("{}\n", rnd->format == "hex" ? crypto::to_hex(r) : crypto::to_base64(r));
    }
  });
}

}  // namespace kms::cli
