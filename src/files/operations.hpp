// The file operations of a vault (src/files/operations.cpp): the vault's FileSession (file
// encrypt, decrypt and rewrap), a failure before any key use. Reached through Service::files().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/file_session.hpp"

namespace kms {

class Runner;
class Vault;

// A file encrypt, decrypt or rewrap is recorded twice (docs/FORMAT.md §8.1): the key use, in the
// transaction that wraps, unwraps or rewraps the data key and before any output, as `started`
// (params step "start"); then its end, once the last frame is written and the output published
// (`output.publish`), as `ok` (step "done", with started_seq, bytes and frames), or as `error`
// (step "end", started_seq, and the failure's code: `interrupted` for a caught signal). While it
// runs, the process holds VAULT.ops/<started_seq>.lock; the next command ends the record of a
// process that died (error, `interrupted`). A failure before any key is used is one error
// record with step "header".
class FileOperations {
 public:
  explicit FileOperations(Runner& runner);

  // In this process: a session (below) run by kms::encrypt_file or kms::decrypt_file.
  FileResult encrypt(int in_fd, int out_fd, const std::vector<std::string>& key_refs,
                     const Context& context, std::uint32_t frame_size, std::string_view name,
                     const envelope::Progress& progress = {}, const FileOutput& output = {});
  FileResult decrypt(int in_fd, int out_fd, const Context& context, std::string_view name,
                     const envelope::Progress& progress = {}, const FileOutput& output = {});
  // The session of one file encrypt (key_refs: the keys to wrap for), decrypt or rewrap (none),
  // whose bulk encryption or copy runs here or in an agent's client. Its methods run operations: an
  // agent calls them with its lock held and the session's caller set.
  std::unique_ptr<FileSession> session(Action action, std::string name,
                                       std::vector<std::string> key_refs = {});
  // Records a file operation that failed before any key was used (its header could not be read,
  // or names another context): one error record, stage "header". Throws what Runner::run
  // throws: a caller the authoriser refuses gets Code::refused (and a `denied` record instead).
  void failed(Action action, const std::string& name, const Error& e);

 private:
  Runner& runner_;
  Vault& vault_;
};

}  // namespace kms
