// kmsctl entry point: process hygiene, then the command, through an agent or in this process.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cli/app.hpp"

namespace {

void harden_process() {
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);    // no core file can hold a key
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // and no ptrace attach by other same-user processes
  ::umask(077);                          // files kmsctl creates are private whatever the umask
}

}  // namespace

int main(int argc, char** argv) {
  harden_process();
  kms::cli::take_pins_from_environment();  // a PIN stays in no environment block
  // A command's requests go to an agent when one serves its vault (cli::send); OpenSSL, the
  // token and SQLite are loaded only when the vault is opened in this process.
  const int code = kms::cli::run_command(argc, argv);
#if defined(__SANITIZE_ADDRESS__)
  return code;  // LeakSanitizer checks for leaks at exit
#else
  // The command is done: its vault, token session and files are closed, and its secrets wiped.
  // What exit() would still do is run the destructors of static objects and of every loaded
  // library (SoftHSM2's among them), about 0.1 ms that changes nothing the process leaves.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(code);
#endif
}
