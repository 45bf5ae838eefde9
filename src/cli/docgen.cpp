// Shell completions and the manual page, generated from the same CLI11 tree the parser uses,
// so a new command or flag appears in them without being written twice.
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/actions.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace {

struct Node {
  std::string path;  // "" for the root, "audit list" for a leaf
  const CLI::App* app;
};

// The subcommands help shows: not the hidden ones (an empty group), such as `__complete`.
std::vector<const CLI::App*> visible_subs(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); });
}

std::vector<Node> walk(const CLI::App& root) {
  std::vector<Node> out{{"", &root}};
  for (size_t i = 0; i < out.size(); ++i) {
    for (const CLI::App* sub : visible_subs(*out[i].app)) {
      out.push_back(
          {out[i].path.empty() ? sub->get_name() : out[i].path + " " + sub->get_name(), sub});
    }
  }
  return out;
}

std::vector<std::string> sub_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* s : visible_subs(app)) names.push_back(s->get_name());
  return names;
}

std::vector<const CLI::Option*> flags(const CLI::App& app) {
  std::vector<const CLI::Option*> out;
  for (const CLI::Option* o : app.get_options()) {
    if (o->nonpositional()) out.push_back(o);
  }
  return out;
}

std::vector<const CLI::Option*> positionals(const CLI::App& app) {
  std::vector<const CLI::Option*> out;
  for (const CLI::Option* o : app.get_options()) {
    if (!o->nonpositional()) out.push_back(o);
  }
  return out;
}

std::vector<std::string> option_words(const CLI::Option* o) {
  std::vector<std::string> words;
  for (const auto& l : o->get_lnames()) words.push_back("--" + l);
  for (const auto& s : o->get_snames()) words.push_back("-" + s);
  return words;
}

// The flags a command takes: its own, then the global ones (they may follow the command words).
std::vector<std::string> flag_words(const CLI::App& app, const CLI::App& root) {
  std::vector<std::string> words;
  for (const CLI::App* a : {&app, &root}) {
    for (const CLI::Option* o : flags(*a)) {
      if (o == root.get_help_all_ptr() && a != &app) continue;
      for (const std::string& w : option_words(o)) {
        if (std::find(words.begin(), words.end(), w) == words.end()) words.push_back(w);
      }
    }
    if (a == &root) break;
  }
  return words;
}

bool takes_value(const CLI::Option* o) { return o->get_expected_max() > 0; }

std::string join(const std::vector<std::string>& v, const char* sep = " ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// What completes the value of an option or a positional argument.
enum class Kind { none, text, file, dir, keys, aliases, secrets, values };
struct Arg {
  Kind kind = Kind::none;
  std::vector<std::string> values;  // Kind::values: the allowed ones
};

// The values an option's checks allow, as CLI11 describes IsMember, Transformer and
// CheckedTransformer in its type name: `TEXT:{Enabled,Disabled}` (or `{a->1,b->2}`).
std::vector<std::string> allowed_values(const CLI::Option* o) {
  const std::string t = o->get_type_name();
  const auto open = t.find('{'), close = t.find('}', open);
  if (open == std::string::npos || close == std::string::npos) return {};
  std::vector<std::string> out;
  std::stringstream items(t.substr(open + 1, close - open - 1));
  for (std::string item; std::getline(items, item, ',');) {
    item = item.substr(0, item.find("->"));
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// From the option's type name: FILE, DIR, PATH and the other files; KEY (a key id or an alias),
// ALIAS; a secret's NAME (the positional of a `secret` verb, `exec --secret`). A NAME or an
// ALIAS given to a `create` names a new one: nothing to offer.
Arg arg_of(const std::string& path, const CLI::Option* o) {
  if (!takes_value(o)) return {};
  if (auto values = allowed_values(o); !values.empty()) return {Kind::values, std::move(values)};
  const std::string type = o->get_type_name();
  const std::string base = type.substr(0, type.find(':'));
  const bool creates = path == "create" || path.ends_with(" create");
  if (base == "FILE" || base == "PATH" || base == "PUBKEY" || base.ends_with("_FILE")) {
    return {Kind::file, {}};
  }
  if (base == "DIR") return {Kind::dir, {}};
  if (base == "KEY") return {Kind::keys, {}};
  if (base == "ALIAS" && !creates) return {Kind::aliases, {}};
  if ((base == "NAME" && !o->nonpositional() && path.starts_with("secret ") && !creates) ||
      (base == "NAME[=ENV]" && o->check_lname("secret"))) {
    return {Kind::secrets, {}};
  }
  return {Kind::text, {}};
}

// The kind as the scripts' _kmsctl_arg returns it: `file`, `keys`, `values A B C`...
std::string kind_word(const Arg& a) {
  switch (a.kind) {
    case Kind::none:
      return "";
    case Kind::text:
      return "text";
    case Kind::file:
      return "file";
    case Kind::dir:
      return "dir";
    case Kind::keys:
      return "keys";
    case Kind::aliases:
      return "aliases";
    case Kind::secrets:
      return "secrets";
    case Kind::values:
      return "values " + join(a.values);
  }
  return "";
}

// `PATH|WORD` -> kind, for every value-taking option (WORD: --flag, -f) and positional argument
// (WORD: #N, the Nth after the command words; #* for every one from a repeated last), in the
// order a case statement must try them: exact ones first, then the repeated positionals, then
// the global options (any PATH).
struct ArgCase {
  std::string path;  // "*": any
  std::vector<std::string> words;
  std::string kind;
};
std::vector<ArgCase> arg_cases(const std::vector<Node>& nodes) {
  std::vector<ArgCase> exact, repeated, global;
  for (const Node& n : nodes) {
    for (const CLI::Option* o : flags(*n.app)) {
      const std::string kind = kind_word(arg_of(n.path, o));
      if (kind.empty()) continue;
      (n.path.empty() ? global : exact)
          .push_back({n.path.empty() ? "*" : n.path, option_words(o), kind});
    }
    if (n.path.empty()) continue;
    const auto pos = positionals(*n.app);
    for (std::size_t i = 0; i < pos.size(); ++i) {
      const std::string kind = kind_word(arg_of(n.path, pos[i]));
      exact.push_back({n.path, {"#" + std::to_string(i)}, kind});
      if (i + 1 == pos.size() && pos[i]->get_expected_max() > 1) {
        repeated.push_back({n.path, {"#*"}, kind});
      }
    }
  }
  exact.insert(exact.end(), repeated.begin(), repeated.end());
  exact.insert(exact.end(), global.begin(), global.end());
  return exact;
}

// A case pattern of `PATH|WORD` for sh and zsh: `*` and `#*` stay wildcards.
std::string case_pattern(const std::string& path, const std::string& word) {
  const std::string p = path == "*" ? "*" : "\"" + path + "\"";
  return p + (word == "#*" ? "\"|#\"*" : "\"|" + word + "\"");
}

// The `case` branches of _kmsctl_flags (bash and zsh): each command's flags, between `before`
// and `after` (`echo "` and `"`, or `reply=(` and `)`).
void flag_branches(std::ostream& o, const std::vector<Node>& nodes, const CLI::App& root,
                   std::string_view before, std::string_view after) {
  for (const Node& n : nodes) {
    o << "    \"" << n.path << "\") " << before << join(flag_words(*n.app, root)) << after
      << " ;;\n";
  }
}

// The `case` branches of _kmsctl_arg (bash and zsh): what completes each option's value and
// each argument, between `before` and `after`.
void arg_branches(std::ostream& o, const std::vector<Node>& nodes, std::string_view before,
                  std::string_view after) {
  for (const ArgCase& c : arg_cases(nodes)) {
    std::vector<std::string> pats;
    for (const std::string& w : c.words) pats.push_back(case_pattern(c.path, w));
    o << "    " << join(pats, "|") << ") " << before << c.kind << after << " ;;\n";
  }
}

std::string bash(const CLI::App& root) {
  const auto nodes = walk(root);
  std::ostringstream o;
  o << "# bash completion for kmsctl — generated by `kmsctl completion bash`; do not edit.\n"
       "_kmsctl_subcommands() {\n  case \"$1\" in\n";
  for (const Node& n : nodes) {
    const auto subs = sub_names(*n.app);
    if (!subs.empty()) o << "    \"" << n.path << "\") echo \"" << join(subs) << "\" ;;\n";
  }
  o << "  esac\n}\n_kmsctl_flags() {\n  case \"$1\" in\n";
  flag_branches(o, nodes, root, "echo \"", "\"");
  o << "  esac\n}\n"
       "# What completes the value of an option ($2: --flag) or of the Nth argument ($2: #N) of\n"
       "# the command $1: file, dir, keys, aliases, secrets, values A B..., text; nothing for a\n"
       "# flag that takes no value.\n"
       "_kmsctl_arg() {\n  case \"$1|$2\" in\n";
  arg_branches(o, nodes, "echo \"", "\"");
  o << "  esac\n}\n"
       "# Names in the vault that begin with $2 ($1: keys, aliases or secrets), from the vault "
       "file\n"
       "# alone (`kmsctl __complete`: no PIN, no audit record); $3 the --vault, $4 the --server "
       "given.\n"
       "_kmsctl_names() {\n"
       "  local cmd=\"${words[0]}\" v=\"$3\"\n"
       "  [[ $cmd == \"~/\"* ]] && cmd=\"$HOME/${cmd#\"~/\"}\"\n"
       "  [[ $v == \"~/\"* ]] && v=\"$HOME/${v#\"~/\"}\"\n"
       "  command \"$cmd\" ${v:+--vault \"$v\"} ${4:+--server \"$4\"} __complete \"$1\" -- \"$2\" "
       "2>/dev/null </dev/null\n"
       "}\n"
       "_kmsctl() {\n"
       "  local cur prev words cword\n"
       "  if declare -F _get_comp_words_by_ref >/dev/null; then\n"
       "    _get_comp_words_by_ref -n =: cur prev words cword  # bash-completion: `a=b` one word\n"
       "  else\n"
       "    words=(\"${COMP_WORDS[@]}\") cword=$COMP_CWORD\n"
       "    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
       "  fi\n"
       "  local path=\"\" i w n=0 skip=\"\" vault=\"\" server=\"\" dashdash=\"\" kind=\"\" "
       "pre=\"\" "
       "full=\"$cur\"\n"
       "  for ((i = 1; i < cword; i++)); do\n"
       "    w=\"${words[i]}\"\n"
       "    if [[ -n $skip ]]; then  # the value of the option before\n"
       "      [[ $w == \"=\" ]] && continue  # --vault=V as bash splits it\n"
       "      case \"$skip\" in --vault) vault=\"$w\" ;; --server) server=\"$w\" ;; esac\n"
       "      skip=\"\"\n"
       "      continue\n"
       "    fi\n"
       "    if [[ -z $dashdash ]]; then\n"
       "      case \"$w\" in\n"
       "        --) dashdash=1; continue ;;\n"
       "        --vault=*) vault=\"${w#*=}\"; continue ;;\n"
       "        --server=*) server=\"${w#*=}\"; continue ;;\n"
       "        --*=*) continue ;;\n"
       "        -?*) [[ -n \"$(_kmsctl_arg \"$path\" \"$w\")\" ]] && skip=\"$w\"; continue ;;\n"
       "      esac\n"
       "      case \" $(_kmsctl_subcommands \"$path\") \" in\n"
       "        *\" $w \"*) path=\"${path:+$path }$w\"; n=0; continue ;;\n"
       "      esac\n"
       "    fi\n"
       "    n=$((n + 1))\n"
       "  done\n"
       "  if [[ -n $skip ]]; then\n"
       "    kind=\"$(_kmsctl_arg \"$path\" \"$skip\")\"\n"
       "    [[ $cur == \"=\" ]] && pre=\"=\" cur=\"\"\n"
       "  elif [[ -z $dashdash && $cur == --*=* ]]; then\n"
       "    kind=\"$(_kmsctl_arg \"$path\" \"${cur%%=*}\")\" pre=\"${cur%%=*}=\" "
       "cur=\"${cur#*=}\"\n"
       "  elif [[ -z $dashdash && $cur == -* ]]; then\n"
       "    COMPREPLY=($(compgen -W \"$(_kmsctl_flags \"$path\")\" -- \"$cur\"))\n"
       "    return\n"
       "  elif [[ -n \"$(_kmsctl_subcommands \"$path\")\" ]]; then\n"
       "    COMPREPLY=($(compgen -W \"$(_kmsctl_subcommands \"$path\")\" -- \"$cur\"))\n"
       "    return\n"
       "  else\n"
       "    kind=\"$(_kmsctl_arg \"$path\" \"#$n\")\"\n"
       "  fi\n"
       "  COMPREPLY=()\n"
       "  case \"$kind\" in\n"
       "    file) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "
       "\"$cur\") ;;\n"
       "    dir) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "
       "\"$cur\") ;;\n"
       "    \"values \"*) COMPREPLY=($(compgen -W \"${kind#values }\" -- \"$cur\")) ;;\n"
       "    keys | aliases | secrets)\n"
       "      mapfile -t COMPREPLY < <(_kmsctl_names \"$kind\" \"$cur\" \"$vault\" \"$server\") "
       ";;\n"
       "  esac\n"
       "  # bash replaces only the part of the word after its last break (`=`, `:`): offer that "
       "part.\n"
       "  local native=\"${COMP_WORDS[COMP_CWORD]}\" lead\n"
       "  lead=\"${full%\"$native\"}\"\n"
       "  for i in \"${!COMPREPLY[@]}\"; do\n"
       "    w=\"$pre${COMPREPLY[i]}\"\n"
       "    COMPREPLY[i]=\"${w#\"$lead\"}\"\n"
       "  done\n"
       "}\n"
       "complete -F _kmsctl kmsctl\n";
  return o.str();
}

std::string zsh(const CLI::App& root) {
  const auto nodes = walk(root);
  std::ostringstream o;
  o << "#compdef kmsctl\n"
       "# zsh completion for kmsctl — generated by `kmsctl completion zsh`; do not edit.\n"
       "_kmsctl_subcommands() {\n  case \"$1\" in\n";
  for (const Node& n : nodes) {
    const CLI::App& a = *n.app;
    std::vector<std::string> items;
    for (const CLI::App* s : visible_subs(a)) {
      std::string d = s->get_description();
      std::replace(d.begin(), d.end(), '\'', ' ');
      items.push_back("'" + s->get_name() + ":" + d + "'");
    }
    if (!items.empty()) o << "    \"" << n.path << "\") reply=(" << join(items) << ") ;;\n";
  }
  o << "    *) reply=() ;;\n  esac\n}\n_kmsctl_flags() {\n  case \"$1\" in\n";
  flag_branches(o, nodes, root, "reply=(", ")");
  o << "    *) reply=() ;;\n  esac\n}\n"
       "# What completes the value of an option ($2: --flag) or of the Nth argument ($2: #N) of\n"
       "# the command $1, in REPLY: file, dir, keys, aliases, secrets, values A B..., text; empty\n"
       "# for a flag that takes no value.\n"
       "_kmsctl_arg() {\n  case \"$1|$2\" in\n";
  arg_branches(o, nodes, "REPLY=\"", "\"");
  o << "    *) REPLY=\"\" ;;\n  esac\n}\n"
       "_kmsctl() {\n"
       "  local cmdpath=\"\" i w n=0 skip=\"\" vault=\"\" server=\"\" dashdash=\"\" kind cmd\n"
       "  local -a reply names opts\n"
       "  for ((i = 2; i < CURRENT; i++)); do\n"
       "    w=\"${(Q)words[i]}\"\n"
       "    if [[ -n $skip ]]; then  # the value of the option before\n"
       "      case \"$skip\" in --vault) vault=\"$w\" ;; --server) server=\"$w\" ;; esac\n"
       "      skip=\"\"\n"
       "      continue\n"
       "    fi\n"
       "    if [[ -z $dashdash ]]; then\n"
       "      case \"$w\" in\n"
       "        --) dashdash=1; continue ;;\n"
       "        --vault=*) vault=\"${w#*=}\"; continue ;;\n"
       "        --server=*) server=\"${w#*=}\"; continue ;;\n"
       "        --*=*) continue ;;\n"
       "        -?*) _kmsctl_arg \"$cmdpath\" \"$w\"; [[ -n $REPLY ]] && skip=\"$w\"; continue ;;\n"
       "      esac\n"
       "      _kmsctl_subcommands \"$cmdpath\"\n"
       "      names=(${reply%%:*})\n"
       "      if (( ${names[(Ie)$w]} )); then cmdpath=\"${cmdpath:+$cmdpath }$w\"; n=0; continue; "
       "fi\n"
       "    fi\n"
       "    n=$((n + 1))\n"
       "  done\n"
       "  if [[ -n $skip ]]; then\n"
       "    _kmsctl_arg \"$cmdpath\" \"$skip\"\n"
       "  elif [[ -z $dashdash && \"$PREFIX\" == --*=* ]]; then\n"
       "    _kmsctl_arg \"$cmdpath\" \"${PREFIX%%=*}\"\n"
       "    compset -P '*='\n"
       "  elif [[ -z $dashdash && \"$PREFIX\" == -* ]]; then\n"
       "    _kmsctl_flags \"$cmdpath\"; compadd -- \"${reply[@]}\"\n"
       "    return\n"
       "  else\n"
       "    _kmsctl_subcommands \"$cmdpath\"\n"
       "    if (( $#reply )); then _describe 'command' reply; return; fi\n"
       "    _kmsctl_arg \"$cmdpath\" \"#$n\"\n"
       "  fi\n"
       "  kind=\"$REPLY\"\n"
       "  case \"$kind\" in\n"
       "    file) _files ;;\n"
       "    dir) _files -/ ;;\n"
       "    \"values \"*) compadd -- ${=kind#values } ;;\n"
       "    keys | aliases | secrets)\n"
       "      # From the vault file alone (`kmsctl __complete`: no PIN, no audit record).\n"
       "      cmd=\"${(Q)words[1]}\"\n"
       "      [[ $cmd == '~/'* ]] && cmd=\"$HOME/${cmd#\\~/}\"\n"
       "      [[ $vault == '~/'* ]] && vault=\"$HOME/${vault#\\~/}\"\n"
       "      opts=()\n"
       "      [[ -n $vault ]] && opts+=(--vault \"$vault\")\n"
       "      [[ -n $server ]] && opts+=(--server \"$server\")\n"
       "      names=(${(f)\"$(command \"$cmd\" \"${opts[@]}\" __complete \"$kind\" -- "
       "\"${(Q)PREFIX}\" 2>/dev/null </dev/null)\"})\n"
       "      compadd -- \"${names[@]}\" ;;\n"
       "  esac\n"
       "}\n"
       "_kmsctl \"$@\"\n";
  return o.str();
}

std::string fish_escape(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// The options of `complete` that complete a value of this kind (after -r for an option).
std::string fish_kind(const Arg& a) {
  switch (a.kind) {
    case Kind::none:
      return "";
    case Kind::text:
      return " -f";
    case Kind::file:
      return " -F";
    case Kind::dir:
      return " -f -a '(__fish_complete_directories (commandline -ct))'";
    case Kind::keys:
      return " -f -a '(__kmsctl_names keys)'";
    case Kind::aliases:
      return " -f -a '(__kmsctl_names aliases)'";
    case Kind::secrets:
      return " -f -a '(__kmsctl_names secrets)'";
    case Kind::values:
      return " -f -a '" + fish_escape(join(a.values)) + "'";
  }
  return "";
}

std::string fish(const CLI::App& root) {
  const auto nodes = walk(root);
  std::ostringstream o;
  o << "# fish completion for kmsctl — generated by `kmsctl completion fish`; do not edit.\n"
       "function __kmsctl_subcommands\n    switch \"$argv[1]\"\n";
  for (const Node& n : nodes) {
    const auto subs = sub_names(*n.app);
    if (!subs.empty())
      o << "        case '" << n.path << "'\n            printf '%s\\n' " << join(subs) << "\n";
  }
  o << "    end\nend\n"
       "# Whether the option $2 of the command $1 takes a value.\n"
       "function __kmsctl_takes_value\n    switch \"$argv[1]|$argv[2]\"\n";
  for (const ArgCase& c : arg_cases(nodes)) {
    if (c.words.front().starts_with("#")) continue;
    std::vector<std::string> pats;
    for (const std::string& w : c.words) pats.push_back("'" + c.path + "|" + w + "'");
    o << "        case " << join(pats) << "\n            return 0\n";
  }
  o << "    end\n    return 1\nend\n"
       "# The command words, the number of arguments after them, and the option whose value the\n"
       "# next token is (or '').\n"
       "function __kmsctl_state\n"
       "    set -l path ''\n"
       "    set -l n 0\n"
       "    set -l skip ''\n"
       "    set -l dashdash ''\n"
       "    for w in (commandline -opc)[2..-1]\n"
       "        if test -n \"$skip\"\n"
       "            set skip ''\n"
       "            continue\n"
       "        end\n"
       "        if test -z \"$dashdash\"\n"
       "            switch $w\n"
       "                case --\n"
       "                    set dashdash 1\n"
       "                    continue\n"
       "                case '--*=*'\n"
       "                    continue\n"
       "                case '-?*'\n"
       "                    __kmsctl_takes_value \"$path\" $w; and set skip $w\n"
       "                    continue\n"
       "            end\n"
       "            if contains -- $w (__kmsctl_subcommands \"$path\")\n"
       "                set path (string trim -- \"$path $w\")\n"
       "                set n 0\n"
       "                continue\n"
       "            end\n"
       "        end\n"
       "        set n (math $n + 1)\n"
       "    end\n"
       "    echo \"$n|$skip|$path\"\n"
       "end\n"
       "function __kmsctl_path\n"
       "    set -l state (string split -m 2 '|' -- (__kmsctl_state))\n"
       "    echo $state[3]\n"
       "end\n"
       "# Whether the token being completed is argument $2 (N, or N+ for N and after) of the\n"
       "# command $1.\n"
       "function __kmsctl_at\n"
       "    set -l state (string split -m 2 '|' -- (__kmsctl_state))\n"
       "    test \"$state[3]\" = \"$argv[1]\"; and test -z \"$state[2]\"; or return 1\n"
       "    if string match -q -- '*+' $argv[2]\n"
       "        test $state[1] -ge (string trim -c + -- $argv[2])\n"
       "    else\n"
       "        test $state[1] -eq $argv[2]\n"
       "    end\n"
       "end\n"
       "# Names in the vault that begin with the token being completed ($1: keys, aliases or\n"
       "# secrets), from the vault file alone (`kmsctl __complete`: no PIN, no audit record).\n"
       "function __kmsctl_names\n"
       "    set -l tokens (commandline -opc)\n"
       "    set -l args\n"
       "    set -l i 2\n"
       "    while test $i -le (count $tokens)\n"
       "        switch $tokens[$i]\n"
       "            case --vault --server\n"
       "                set i (math $i + 1)\n"
       "                if test $i -le (count $tokens)\n"
       "                    set -a args $tokens[(math $i - 1)] (string replace -r '^~/' \"$HOME/\" "
       "-- "
       "$tokens[$i])\n"
       "                end\n"
       "            case '--vault=*' '--server=*'\n"
       "                set -a args $tokens[$i]\n"
       "        end\n"
       "        set i (math $i + 1)\n"
       "    end\n"
       "    set -l cmd (string replace -r '^~/' \"$HOME/\" -- $tokens[1])\n"
       "    command $cmd $args __complete $argv[1] -- (commandline -ct) 2>/dev/null </dev/null\n"
       "end\n"
       "complete -c kmsctl -f\n";
  for (const Node& n : nodes) {
    const std::string cond = "test (__kmsctl_path) = '" + n.path + "'";
    for (const CLI::App* s : visible_subs(*n.app)) {
      o << "complete -c kmsctl -n \"" << cond << "\" -a " << s->get_name() << " -d '"
        << fish_escape(s->get_description()) << "'\n";
    }
    for (const CLI::Option* opt : flags(*n.app)) {
      o << "complete -c kmsctl";
      // The global options, anywhere; the others after their command's words.
      if (!n.path.empty()) o << " -n \"" << cond << "\"";
      for (const auto& l : opt->get_lnames()) o << " -l " << l;
      for (const auto& s : opt->get_snames()) o << " -s " << s;
      if (takes_value(opt)) o << " -r" << fish_kind(arg_of(n.path, opt));
      o << " -d '" << fish_escape(opt->get_description()) << "'\n";
    }
    if (n.path.empty()) continue;
    const auto pos = positionals(*n.app);
    for (std::size_t i = 0; i < pos.size(); ++i) {
      const Arg a = arg_of(n.path, pos[i]);
      if (a.kind == Kind::text) continue;
      const bool more = i + 1 == pos.size() && pos[i]->get_expected_max() > 1;
      o << "complete -c kmsctl -n \"__kmsctl_at '" << n.path << "' " << i << (more ? "+" : "")
        << "\"" << fish_kind(a) << "\n";
    }
  }
  return o.str();
}

std::string roff_escape(std::string s) {
  std::string out;
  bool bold = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {
      out += "\\e";
    } else if (s[i] == '-') {
      out += "\\-";
    } else if (s[i] == '`') {  // Markdown's code span: bold, as man pages show commands
      bold = !bold;
      out += bold ? "\\fB" : "\\fR";
    } else if ((s[i] == '.' || s[i] == '\'') && (i == 0)) {
      out += "\\&";
      out += s[i];
    } else {
      out += s[i];
    }
  }
  if (bold) out += "\\fR";
  return out;
}

// The tree in the order help lists it: a group, then its verbs, each before the next group.
void in_help_order(const CLI::App& app, const std::string& path, std::vector<Node>& out) {
  out.push_back({path, &app});
  for (const CLI::App* sub : visible_subs(app)) {
    in_help_order(*sub, path.empty() ? sub->get_name() : path + " " + sub->get_name(), out);
  }
}

// An example line, as roff shows it verbatim (no fill, no adjustment).
std::string example_lines(const Examples& e) {
  std::string out;
  for (const std::string_view line : e.lines) out += roff_escape(std::string(line)) + "\n";
  return out;
}

std::string option_synopsis(const CLI::Option* o) {
  std::string names;
  for (const auto& s : o->get_snames()) names += (names.empty() ? "-" : ", -") + s;
  for (const auto& l : o->get_lnames()) names += (names.empty() ? "--" : ", --") + l;
  if (takes_value(o)) {
    std::string t = o->get_type_name();
    // A long list of allowed values ({A,B,...}) breaks after its commas.
    for (std::size_t at = t.find(','); at != std::string::npos; at = t.find(',', at + 2)) {
      t.insert(at + 1, " ");
    }
    names += " " + (t.empty() ? std::string("VALUE") : t);
  }
  return names;
}

}  // namespace

std::string completion_script(const CLI::App& app, const std::string& shell) {
  if (shell == "bash") return bash(app);
  if (shell == "zsh") return zsh(app);
  if (shell == "fish") return fish(app);
  throw Error(Code::usage, fmt::format("no completion for shell {}", shell),
              "use bash, zsh or fish");
}

std::string man_page(const CLI::App& root) {
  std::ostringstream o;
  o << ".\\\" Generated by `kmsctl manpage` from the command definitions; do not edit.\n"
    << ".TH KMSCTL 1 \"\" \"kmsctl " << KMSCTL_VERSION << "\" \"User Commands\"\n"
    << ".SH NAME\nkmsctl \\- "
    << roff_escape(
           "key management service: a vault sealed by a PKCS#11 "
           "token, with a tamper-evident audit log")
    << "\n.SH SYNOPSIS\n.B kmsctl\n[\\fIGLOBAL OPTIONS\\fR] \\fIGROUP\\fR \\fIVERB\\fR "
       "[\\fIARGS\\fR]\n"
    << ".SH DESCRIPTION\n"
    << roff_escape(
           "kmsctl keeps a vault: a SQLite file whose contents are sealed under a master "
           "key, itself sealed by a root key that never leaves a PKCS#11 token (SoftHSM2 "
           "by default). Every operation appends a record to a hash-chained, MACed audit "
           "log whose head is anchored in the token.")
    << "\n.SH GLOBAL OPTIONS\n";
  for (const CLI::Option* opt : flags(root)) {
    if (opt == root.get_help_all_ptr()) continue;
    o << ".TP\n.B " << roff_escape(option_synopsis(opt)) << "\n"
      << roff_escape(opt->get_description());
    if (!opt->get_envname().empty()) o << " (environment: " << opt->get_envname() << ")";
    o << "\n";
  }
  std::vector<Node> tree;
  in_help_order(root, "", tree);
  for (const Examples& e : examples()) {
    if (std::none_of(tree.begin(), tree.end(), [&](const Node& n) { return n.path == e.path; })) {
      throw Error(Code::failed, fmt::format("examples.cpp names no command: {}", e.path));
    }
  }
  o << ".SH COMMANDS\n" << roff_escape("Options marked (required) must be given.") << "\n";
  for (const Node& n : tree) {
    if (n.path.empty() || !visible_subs(*n.app).empty()) {
      continue;
    }
    std::string synopsis = "kmsctl " + n.path;
    for (const CLI::Option* opt : n.app->get_options()) {
      if (!opt->nonpositional()) synopsis += " " + opt->get_name();
    }
    o << ".SS " << roff_escape(synopsis) << "\n" << roff_escape(n.app->get_description()) << "\n";
    for (const CLI::Option* opt : n.app->get_options()) {
      if (opt == n.app->get_help_ptr() || opt == n.app->get_help_all_ptr()) continue;
      o << ".TP\n.B " << roff_escape(opt->nonpositional() ? option_synopsis(opt) : opt->get_name())
        << "\n"
        << roff_escape(opt->get_description()) << (opt->get_required() ? " (required)" : "")
        << "\n";
    }
  }
  // One subsection per group (a top-level command is its own), its commands in help's order.
  o << ".SH EXAMPLES\n";
  for (const Node& n : tree) {
    if (n.path.empty()) continue;
    const bool top = n.path.find(' ') == std::string::npos;
    if (top) o << ".SS " << roff_escape(n.path) << "\n";
    if (const Examples* e = examples_of(n.path)) {
      o << ".PP\n.nf\n.RS 4\n" << example_lines(*e) << ".RE\n.fi\n";
    }
  }
  o << ".SH SECRET ROTATION\n"
    << roff_escape(
           "`kmsctl secret rotate NAME` (and `kmsctl maintain`, for secrets whose "
           "rotation period has elapsed) runs the secret's rotation command with /bin/sh -c "
           "once per step, in this order, outside any vault transaction:")
    << "\n";
  const std::pair<const char*, const char*> steps[] = {
      {"create",
       "The hook may print the new value on standard output (one trailing newline is "
       "dropped). If it prints nothing, kmsctl generates one: a JSON object with a string "
       "\"password\" keeps its other fields and gets a new password; any other value is "
       "replaced. The value is stored as version KMSCTL_PENDING_VERSION_ID, stage pending."},
      {"set", "The hook applies the pending value to the real system."},
      {"test", "The hook checks that the pending value works."},
      {"finish", "The hook is told; then kmsctl moves current to previous and pending to current."},
  };
  for (const auto& [step, text] : steps)
    o << ".TP\n.B " << step << "\n" << roff_escape(text) << "\n";
  o << ".PP\n"
    << roff_escape(
           "Environment of the hook: KMSCTL_ROTATION_STEP, KMSCTL_SECRET_NAME, "
           "KMSCTL_SECRET_ID, KMSCTL_CURRENT_VERSION_ID, KMSCTL_PENDING_VERSION_ID, and "
           "KMSCTL_BIN, KMSCTL_VAULT, KMSCTL_PIN_FILE so that it can call kmsctl. Standard "
           "input carries the pending value (empty at create) and file descriptor 3 the "
           "current value; values are never in argv. The hook runs in its own process group, "
           "killed after KMSCTL_HOOK_TIMEOUT seconds (default 300). When it exits or is "
           "killed, every process it left running is killed too, in its process group or "
           "not (setsid, a double fork). A step fails when the "
           "hook exits non-zero or is killed: current is unchanged, the failure is audited and "
           "shown by `secret "
           "describe`, kmsctl exits 1, and the next rotate resumes the same pending version "
           "at step set (so set, test and finish must be idempotent). Without a rotation "
           "command, rotate generates the value and runs create and finish only. One rotation "
           "of a secret runs at a time (exit 4 otherwise).")
    << "\n";
  o << ".SH AGENT\n"
    << roff_escape(
           "`eval \"$(kmsctl agent start)\"` asks for the PIN once, logs in to the token, "
           "unseals the vault and leaves a process that serves this user's kmsctl commands "
           "on that vault through the Unix socket named by KMSCTL_AGENT_SOCK, as gpg-agent "
           "does for gpg. A served command parses its own options, sends the agent a request "
           "and prints the answer itself; it needs no PIN and is audited like any other, with "
           "the parameters channel agent and agent {pid, client_pid}. The agent serves "
           "status, audit, key, encrypt, decrypt, re-encrypt, data-key, random, file and every "
           "secret verb but rotate. Files never cross its socket: file encrypt, decrypt and "
           "rewrap have it wrap or unwrap only the data key. exec has it read the secrets and "
           "runs the command itself. "
           "Everything else (and any command on another vault, or when no agent answers) "
           "runs in the calling process as without an agent. The socket is "
           "in a new 0700 directory; each request is authorised for the uid the kernel names "
           "for its connection (another user's is refused with exit 4 and audited denied), and "
           "kmsctl talks only to an agent of its own uid. It serves many clients at once and "
           "stops after --idle-timeout without one (default 10m), after --max-lifetime "
           "(default 2h), on `kmsctl agent stop`, on SIGTERM, SIGINT or SIGHUP, or when "
           "another file takes the vault's path. agent.start and agent.stop are "
           "audited.")
    << "\n";
  o << ".SH AUDIT ACTIONS\n"
    << roff_escape(
           "Every operation appends one record to the vault's audit log (two for a file "
           "encrypt or decrypt): its time, principal (user name and uid), action, resource, "
           "parameters (never a secret value; a channel parameter, agent, when an agent "
           "served the request), outcome (ok, error, "
           "denied, started) "
           "and error code. An operation that the vault's owner did not ask for is refused "
           "(exit 4) and recorded as denied, with the deciding rule. The actions:")
    << "\n";
  for (const ActionInfo& a : actions()) {
    o << ".TP\n.B " << roff_escape(std::string(a.name)) << "\n"
      << roff_escape(std::string(a.summary)) << "\n";
  }
  o << ".SH EXIT STATUS\n";
  const std::pair<Code, const char*> codes[] = {
      {Code::failed, "the operation failed"},
      {Code::usage, "usage error (bad arguments or input)"},
      {Code::not_found,
       "not found (a named key, alias, secret or file; a key or key version "
       "that a ciphertext names and this vault does not have)"},
      {Code::refused,
       "refused by state or policy (disabled key, existing file, existing vault; "
       "a caller who is not the vault's owner)"},
      {Code::integrity,
       "integrity or authentication failure (tampered data, broken audit chain, "
       "wrong context or key)"},
      {Code::unavailable,
       "vault or token unavailable (wrong PIN, missing module or token, "
       "missing vault, locked PIN)"},
  };
  o << ".TP\n.B 0\nsuccess\n";
  for (const auto& [c, text] : codes)
    o << ".TP\n.B " << exit_code(c) << "\n" << roff_escape(text) << "\n";
  o << ".TP\n.B 129, 130, 143\n"
    << roff_escape(
           "file encrypt or file decrypt stopped by SIGHUP, SIGINT or SIGTERM (128 + the "
           "signal's number): no output file was published, and the audit log records "
           "the operation as interrupted")
    << "\n";
  o << ".SH ENVIRONMENT\n"
    << ".TP\n.B KMSCTL_VAULT, KMSCTL_STORE\nthe vault file, or the PostgreSQL connection string "
       "(as \\-\\-vault or \\-\\-store); two names for one setting: set both, they must agree\n"
    << ".TP\n.B KMSCTL_PIN\nthe token user PIN (never pass a PIN as an argument)\n"
    << ".TP\n.B KMSCTL_PIN_FILE\na file whose first line is the token user PIN (as "
       "\\-\\-pin\\-file); one that other users can read or write is refused\n"
    << ".TP\n.B KMSCTL_AGENT_SOCK\nthe socket of a running \\fBkmsctl agent\\fR (set by "
       "\\fBeval \"$(kmsctl agent start)\"\\fR); empty or unset: no agent\n"
    << ".TP\n.B KMSCTL_SERVER\nthe socket of a \\fBkmsctl serve\\fR (as \\-\\-server): every "
       "request goes to that service, nothing runs here and no PIN is read; commands that "
       "run where the vault is (vault, maintain, secret rotate) exit 2\n"
    << ".TP\n.B KMSCTL_NEW_PIN, KMSCTL_NEW_PIN_FILE\nthe new PIN for \\fBvault change\\-pin\\fR\n"
    << ".TP\n.B KMSCTL_QUIET\nas \\-q (1: print only data and errors)\n"
    << ".TP\n.B KMSCTL_HOOK_TIMEOUT\nseconds a secret rotation hook may run per step (default "
       "300)\n"
    << ".TP\n.B KMSCTL_BIN, KMSCTL_VAULT, KMSCTL_PIN_FILE\nset by kmsctl for a rotation hook, "
       "so that it can call this kmsctl on this vault\n"
    << ".TP\n.B SOFTHSM2_CONF\nSoftHSM2's configuration; for a vault's private token kmsctl "
       "sets it to \\fIVAULT\\fR.token/softhsm2.conf for its own process\n"
    << ".TP\n.B XDG_DATA_HOME, HOME\nwhere the default vault lives "
       "(~/.local/share/kmsctl/vault.db)\n"
    << ".TP\n.B XDG_CONFIG_HOME\nwhere kmsctl/config.toml and kmsctl/trusted\\-modules are "
       "looked for (default ~/.config)\n"
    << ".TP\n.B KMSCTL_PROFILE\nthe profile of the config file to use (as \\-\\-profile)\n"
    << ".TP\n.B KMSCTL_CONFIG\nthe config file of profiles, instead of "
       "$XDG_CONFIG_HOME/kmsctl/config.toml\n"
    << ".TP\n.B XDG_RUNTIME_DIR, TMPDIR\nwhere \\fBagent start\\fR makes its socket's "
       "directory\n"
    << ".TP\n.B CREDENTIALS_DIRECTORY\nsystemd's credentials: a PIN file there may be "
       "group\\-readable (mode 0440)\n"
    << ".TP\n.B LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, RUNTIME_DIRECTORY\nsystemd's socket "
       "activation and runtime directory, for \\fBkmsctl serve\\fR\n"
    << ".TP\n.B KMSCTL_TEST_FAULT, KMSCTL_TEST_SYSLOG\ntests only: faults to inject; a file "
       "that gets the refused\\-login lines instead of syslog\n"
    << ".SH FILES\n"
    << ".TP\n.I ~/.local/share/kmsctl/vault.db\nthe default vault\n"
    << ".TP\n.I VAULT.token/\nthe private SoftHSM2 token made by \\fBinit\\fR without "
       "\\-\\-pkcs11\\-module\n"
    << ".TP\n.I VAULT.token/token\\-copy/\nkmsctl's verified copy of the private token's "
       "token.object, restored when an interrupted command left it damaged\n"
    << ".TP\n.I ~/.config/kmsctl/config.toml\nprofiles: named settings (vault, pin_file, "
       "server, agent_socket, output, quiet) chosen with \\-\\-profile, KMSCTL_PROFILE or "
       "default_profile, below flags and environment variables; no secrets (see \\fBkmsctl "
       "config\\fR)\n"
    << ".TP\n.I ~/.config/kmsctl/trusted\\-modules\nPKCS#11 modules you trust outside the "
       "system library directories, one path per line (only you may be able to write it)\n"
    << ".TP\n.I VAULT.lock\nthe lock that orders writers\n"
    << ".TP\n.I VAULT.rotate.lock\nthe locks that allow one rotation per secret at a time\n"
    << ".TP\n.I VAULT.ops/\na lock file per running file encrypt or decrypt; the next command "
       "records the end of one whose process died\n"
    << ".SH SEE ALSO\n.BR pkcs11-tool (1),\n.BR softhsm2-util (1)\n";
  return o.str();
}

}  // namespace kms::cli
