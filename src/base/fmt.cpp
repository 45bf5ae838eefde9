// fmt's compiled part, built once here. With fmt header-only every translation unit that formats
// would compile it again (about half of each one's build time); libfmt.so would bring
// libstdc++.so back into every process (see kmsctl in CMakeLists.txt).
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {
// format.h declares these extern when fmt is not header-only: their one definition is here.
template auto thousands_sep_impl<char>(locale_ref) -> thousands_sep_result<char>;
template auto thousands_sep_impl<wchar_t>(locale_ref) -> thousands_sep_result<wchar_t>;
template auto decimal_point_impl(locale_ref) -> char;
template auto decimal_point_impl(locale_ref) -> wchar_t;
}  // namespace detail
FMT_END_NAMESPACE
