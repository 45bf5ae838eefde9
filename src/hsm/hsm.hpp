// PKCS#11 access: any module loaded by path, RAII sessions, and the few token operations kmsctl
// needs (AES-256 keys and RSA, EC and Ed25519 key pairs that never leave the token, AES-GCM,
// signatures and RSA-OAEP decryption in the token, private data objects).
// Every CK_RV that is not CKR_OK becomes a kms::Error naming the call and the CKR_ constant.
#pragma once

#include <atomic>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <p11-kit/pkcs11.h>

#include "kms/records.hpp"
#include "kms/secure.hpp"

namespace kms::hsm {

using SlotId = unsigned long;
using ObjectHandle = unsigned long;

using TokenInfo = kms::TokenInfo;  // kms/records.hpp

// The name of a CK_RV ("CKR_PIN_INCORRECT"), or its hex value when unknown.
std::string rv_name(unsigned long rv);

class Module {
 public:
  // dlopen + C_GetFunctionList + C_Initialize(CKF_OS_LOCKING_OK), once per path and process
  // (later calls share the loaded module). Missing or invalid module: Code::unavailable with
  // the path in the message.
  static std::shared_ptr<Module> load(const std::string& path);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& path() const noexcept { return path_; }
  CK_FUNCTION_LIST* fn() const noexcept { return fn_; }

  // C_Finalize + C_Initialize, so that the library reads its tokens again (SoftHSM2 caches a
  // token's PIN state, which it may have read while another process rewrote it). Only while no
  // session is open on the module, since C_Finalize closes every session: false otherwise.
  bool reload();

  // Slots that have a token (initialised or not).
  std::vector<TokenInfo> tokens() const;
  // The initialised token with this label and/or serial; Code::unavailable when none matches.
  TokenInfo find_token(const std::optional<std::string>& label,
                       const std::optional<std::string>& serial) const;
  // Initialises the token in `slot` with an SO PIN, sets the user PIN, and returns the token as
  // the module now reports it (SoftHSM2 moves an initialised token to a new slot id).
  TokenInfo init_token(SlotId slot, std::string_view label, const SecureBytes& so_pin,
                       const SecureBytes& user_pin);

 private:
  static std::shared_ptr<Module> load_new(const std::string& path);
  Module(std::string path, void* handle, CK_FUNCTION_LIST* fn);
  friend class Session;
  std::string path_;
  void* handle_;
  CK_FUNCTION_LIST* fn_;
  // Sessions open on this module. C_Finalize would invalidate them, so find_token re-initialises
  // the library only while there are none.
  std::atomic<int> open_sessions_{0};
};

struct DataObject {
  Bytes value;
  std::string label;
  std::string application;  // CKA_APPLICATION
};

// What `vault check-token` needs to know of any object in the token, kmsctl's or not.
struct ObjectInfo {
  ObjectHandle handle = 0;
  unsigned long object_class = 0;  // CKO_*
  std::string label;
  std::string application;  // data objects
  Bytes id;                 // keys
  bool is_private = false;
  bool sensitive = false;   // keys
  bool extractable = true;  // keys
  bool local = false;       // keys (secret, private, public): generated in the token
  // The attributes kmsctl gives its own objects (find_* finds only these).
  bool own_attributes() const;
};

// A key pair to generate in the token (Session::generate_key_pair).
struct KeyPairParams {
  // CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN or CKM_EC_EDWARDS_KEY_PAIR_GEN.
  unsigned long mechanism = 0;
  unsigned long modulus_bits = 0;  // RSA (public exponent 65537)
  Bytes ec_params;                 // EC and EC Edwards: the curve's OID, DER
  bool decrypt = false;            // RSA: the private key decrypts (CKA_DECRYPT), not signs
};

struct KeyPairHandles {
  ObjectHandle private_key = 0;
  ObjectHandle public_key = 0;
};

// "CKM_ECDSA", or the hex value when kmsctl has no name for it.
std::string mechanism_name(unsigned long mechanism);

class Session {
 public:
  Session(std::shared_ptr<Module> module, SlotId slot);  // read-write session
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void login_user(const SecureBytes& pin);
  // As login_user, but returns false instead of throwing when the library reports the token's
  // user PIN as not initialised, which SoftHSM2 does when it loaded the token while another
  // process was rewriting it: the caller can close the session, Module::reload and try again.
  [[nodiscard]] bool try_login_user(const SecureBytes& pin);
  void login_so(const SecureBytes& so_pin);
  void logout();
  void set_pin(const SecureBytes& old_pin, const SecureBytes& new_pin);
  // Sets the user PIN (C_InitPIN): in a session logged in as security officer.
  void init_pin(const SecureBytes& new_pin);

  // AES-256 key generated in the token: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true,
  // CKA_EXTRACTABLE false; usable for encrypt/decrypt only.
  ObjectHandle generate_aes256(std::string_view label, ByteView id);
  // A 32-byte generic secret generated in the token with the same attributes, usable for
  // CKM_SHA256_HMAC signing only.
  ObjectHandle generate_hmac_key(std::string_view label, ByteView id);
  // CKM_SHA256_HMAC (no mechanism parameter) of `data` under `key`, computed in the token;
  // nullopt when `key` is not a key for it (CKR_KEY_TYPE_INCONSISTENT, ..._NOT_PERMITTED).
  [[nodiscard]] std::optional<SecureBytes> hmac_sha256(ObjectHandle key, ByteView data);
  // A key pair generated in the token, both objects with this label and CKA_ID, CKA_TOKEN and
  // CKA_PRIVATE. The private key is CKA_SENSITIVE and never extractable, and only signs (or, with
  // params.decrypt, only decrypts); the public key object only verifies (or encrypts).
  KeyPairHandles generate_key_pair(const KeyPairParams& params, std::string_view label,
                                   ByteView id);
  // Whether the token's mechanism list has `mechanism` with every flag of `flags` (CKF_SIGN...).
  [[nodiscard]] bool has_mechanism(unsigned long mechanism, unsigned long flags);
  // The SubjectPublicKeyInfo DER of an RSA, EC or EC Edwards (Ed25519) public key object;
  // Code::integrity when the object's attributes are not such a key.
  Bytes public_key_info(ObjectHandle public_key);
  // C_Sign with `mechanism` (and its parameter) over `data`: the token's raw output.
  Bytes sign(ObjectHandle key, unsigned long mechanism, void* param, unsigned long param_len,
             ByteView data);
  // RSAES-OAEP with SHA-256, MGF1-SHA-256 and an empty label; nullopt when it does not decrypt.
  [[nodiscard]] std::optional<SecureBytes> rsa_oaep_decrypt(ObjectHandle key, ByteView ciphertext);

  // The find_* calls return only objects with the attributes kmsctl gives its own: token,
  // private (which needs the PIN to create), and for keys also sensitive, never extractable and
  // generated in the token. A public object planted with a matching label is never found.
  std::vector<ObjectHandle> find_keys(std::string_view label);
  std::vector<ObjectHandle> find_keys(std::string_view label, ByteView id);  // label and CKA_ID
  std::vector<ObjectHandle> find_data(std::string_view label);
  // Key pair objects (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY) with this label and CKA_ID.
  std::vector<ObjectHandle> find_private_keys(std::string_view label, ByteView id);
  std::vector<ObjectHandle> find_public_keys(std::string_view label, ByteView id);
  // kmsctl's key objects of every class (secret, private, public) with this label.
  std::vector<ObjectHandle> find_key_objects(std::string_view label);
  Bytes get_id(ObjectHandle object);
  void destroy(ObjectHandle object);
  // Every token object this session can see (public ones, and private ones after login).
  std::vector<ObjectInfo> list_objects();

  // CKM_AES_GCM with a caller-supplied 12-byte IV and a 128-bit tag appended to the output.
  Bytes gcm_encrypt(ObjectHandle key, ByteView iv, ByteView aad, ByteView plaintext);
  // nullopt when the tag does not verify.
  [[nodiscard]] std::optional<SecureBytes> gcm_decrypt(ObjectHandle key, ByteView iv, ByteView aad,
                                                       ByteView ciphertext);

  // Private token data objects (CKO_DATA, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE): readable only
  // after login.
  ObjectHandle create_data(std::string_view label, ByteView value,
                           std::string_view application = "kmsctl");
  std::vector<ObjectHandle> find_data_by_application(std::string_view application);
  Bytes get_value(ObjectHandle object);
  std::string get_label(ObjectHandle object);
  DataObject read_data(ObjectHandle object);  // CKA_VALUE and CKA_LABEL in one call
  // C_SetAttributeValue(CKA_VALUE); false when the token refuses with CKR_ATTRIBUTE_READ_ONLY
  // (SoftHSM2 does for data objects), any other failure throws.
  [[nodiscard]] bool try_set_value(ObjectHandle object, ByteView value);
  void set_label(ObjectHandle object, std::string_view label);

 private:
  // Throws the Error of a refused user PIN (CKR_PIN_INCORRECT, CKR_PIN_LOCKED), in words.
  [[noreturn]] void refuse_pin(CK_RV rv) const;

  std::shared_ptr<Module> module_;
  SlotId slot_ = 0;
  unsigned long handle_ = 0;
  bool logged_in_ = false;
};

}  // namespace kms::hsm
