// kmsctl entry point: process hygiene, parse, run, and the one mapping of errors to exit codes.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/app.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace {

void harden_process() {
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // no core file can hold a key
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // and no ptrace attach by other same-user processes
  ::umask(077);                          // files kmsctl creates are private whatever the umask
}

int report(const kms::Error& e) {
  std::cerr << "kmsctl: error: " << e.what() << '\n';
  if (!e.hint().empty()) std::cerr << "hint: " << e.hint() << '\n';
  return kms::exit_code(e.code());
}

// Parses and runs one command; returns its exit code.
int run(int argc, char** argv) {
  kms::cli::Globals globals;
  std::unique_ptr<CLI::App> app;
  try {
    app = kms::cli::build_app(globals, argc, argv);
    app->parse(argc, argv);
    return 0;
  } catch (const CLI::CallForHelp&) {
    std::cout << app->help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app->help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::ParseError& e) {
    const std::vector<std::string> rest = app->remaining(true);
    std::string what = e.what();
    if (!rest.empty() && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
      what = "unknown command or argument: " + rest.front();
    }
    std::cerr << "kmsctl: error: " << what << '\n'
              << "hint: run `kmsctl --help` or `kmsctl COMMAND --help`\n";
    return kms::exit_code(kms::Code::usage);
  } catch (const kms::Error& e) {
    return report(e);
  } catch (const std::exception& e) {
    return report(kms::Error(kms::Code::failed, e.what()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  harden_process();
  kms::crypto::skip_cleanup_at_exit();
  kms::crypto::init();
  const int code = run(argc, argv);
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
