#include "kms/caller.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <utility>
#include <vector>

namespace kms {
namespace {

// The uid's name from the user database (the C library's own lookup: /etc/passwd, NSS).
const passwd* user_entry(std::int64_t uid, passwd& pw, char (&buf)[4096]) {
  passwd* found = nullptr;
  if (::getpwuid_r(static_cast<uid_t>(uid), &pw, buf, sizeof buf, &found) != 0) return nullptr;
  return found;
}

// This machine's name, read once per process.
const std::string& this_host() {
  static const std::string name = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string();
    return std::string(buf);
  }();
  return name;
}

void add_group(Caller& c, std::int64_t g) {
  if (std::find(c.groups.begin(), c.groups.end(), g) == c.groups.end()) c.groups.push_back(g);
}

}  // namespace

std::string_view channel_name(Channel c) noexcept {
  switch (c) {
    case Channel::direct:
      return "direct";
    case Channel::agent:
      return "agent";
    case Channel::service:
      return "service";
  }
  return "direct";
}

Caller Caller::current() {
  Caller c;
  c.uid = static_cast<std::int64_t>(::getuid());
  c.pid = static_cast<std::int64_t>(::getpid());
  c.host = this_host();
  passwd pw{};
  char buf[4096];
  const passwd* entry = user_entry(c.uid, pw, buf);
  c.user = entry != nullptr ? std::string(entry->pw_name) : "uid-" + std::to_string(c.uid);
  c.groups = {static_cast<std::int64_t>(::getgid())};
  // All of them, however many (an LDAP user may hold hundreds): a group left out would let a
  // policy's deny on it pass. Groups can change between the two calls: ask again then.
  std::vector<gid_t> gids;
  for (;;) {
    const int count = ::getgroups(0, nullptr);
    if (count < 0) throw std::system_error(errno, std::generic_category(), "getgroups");
    gids.resize(static_cast<std::size_t>(count));
    const int n = ::getgroups(count, gids.data());
    if (n >= 0) {
      gids.resize(static_cast<std::size_t>(n));
      break;
    }
    if (errno != EINVAL) throw std::system_error(errno, std::generic_category(), "getgroups");
  }
  for (gid_t g : gids) add_group(c, static_cast<std::int64_t>(g));
  return c;
}

Caller Caller::peer(std::int64_t uid, std::int64_t gid, std::int64_t pid,
                    const std::vector<std::int64_t>& supplementary, Channel channel) {
  Caller c;
  c.uid = uid;
  c.pid = pid;
  c.channel = channel;
  c.host = this_host();
  c.groups = group_list(gid, supplementary);
  passwd pw{};
  char buf[4096];
  const passwd* entry = user_entry(uid, pw, buf);
  c.user = entry != nullptr ? std::string(entry->pw_name) : "uid-" + std::to_string(uid);
  return c;
}

std::vector<std::int64_t> Caller::group_list(std::int64_t gid,
                                             const std::vector<std::int64_t>& supplementary) {
  Caller c;
  c.groups = {gid};
  for (std::int64_t g : supplementary) add_group(c, g);
  return std::move(c.groups);
}

}  // namespace kms
