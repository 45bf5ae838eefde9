// The client's half of `file rewrap`: the file is read and written where it is; only its header
// goes to the vault.
#include "kms/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/posix.hpp"
#include "kms/error.hpp"
#include "kms/requests.hpp"

namespace kms {

FileResult rewrap_file(
    const std::string& path, const std::optional<std::string>& to_key,
    const std::function<req::FileRewrap::Response(const req::FileRewrap&)>& rewrap,
    const std::function<void(const req::FileFailed&)>& failed) {
  const posix::Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) {
    throw Error(Code::not_found, fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  }
  envelope::Header h;
  try {
    h = envelope::read_header(in.get());
  } catch (const Error& e) {
    try {
      failed(req::FileFailed{Action::file_rewrap, files::recorded_path(path), e.code(), 0});
    } catch (const Error&) {
      // The header's error is the one to report.
    }
    throw;
  }
  const std::size_t body = h.encoded_size;
  files::AtomicFile out(path, /*overwrite=*/true);
  const req::FileRewrap::Response r =
      rewrap(req::FileRewrap{files::recorded_path(path), std::move(h), to_key});
  out.write(as_chars(r.header));
  if (!posix::copy_to_end(in.get(), static_cast<off_t>(body), out.fd())) {
    throw Error(Code::failed,
                fmt::format("cannot copy the body of {}: {}", path, std::strerror(errno)));
  }
  out.commit();
  return r.result;
}

}  // namespace kms
