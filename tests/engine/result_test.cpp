// Result<T> (candor/result.h): what callers may rely on when they take the value.
#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

#include "candor/result.h"

namespace candor {
namespace {

Result<std::vector<std::string>> names() {
  // Longer than any small-string buffer, so a freed vector's strings are heap memory ASan watches.
  return std::vector<std::string>{std::string(64, 'a'), std::string(64, 'b')};
}

// A range-for over the value of a temporary Result: the temporary dies at the end of the
// range's initialiser, so value() of an rvalue must hand over the value itself, not a
// reference into the dying Result (which ASan reports as a use after free).
TEST(ResultTest, TheValueOfATemporaryOutlivesIt) {
  static_assert(std::is_same_v<decltype(names().value()), std::vector<std::string>>);
  std::vector<std::string> seen;
  for (const std::string& s : names().value()) seen.push_back(s);
  EXPECT_EQ(seen, (std::vector<std::string>{std::string(64, 'a'), std::string(64, 'b')}));
}

TEST(ResultTest, TakingTheValueOfAnErrorThrowsNamingIt) {
  Result<int> r(ErrorCode::kNotFound, "no collection named 'staff'");
  EXPECT_FALSE(r.ok());
  try {
    (void)r.value();
    FAIL() << "value() of an error returned";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("no collection named 'staff'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace candor
