// A tiny test harness: TEST(name) { CHECK(...); } and run_all() printing "N passed, M failed".
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace check {

struct Case {
  std::string name;
  std::function<void()> fn;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

inline int& failures_in_case() {
  static int n = 0;
  return n;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { cases().push_back({name, std::move(fn)}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  ++failures_in_case();
  std::printf("    %s:%d: %s\n", file, line, what.c_str());
}

template <class T>
std::string show(const T& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

/// Runs every registered case (or those whose name contains `filter`); prints one line each and the total.
inline int run_all(const char* filter = nullptr) {
  int passed = 0, failed = 0;
  for (const Case& c : cases()) {
    if (filter && c.name.find(filter) == std::string::npos) continue;
    failures_in_case() = 0;
    try {
      c.fn();
    } catch (const std::exception& e) {
      fail(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    if (failures_in_case() == 0) {
      ++passed;
      std::printf("ok   %s\n", c.name.c_str());
    } else {
      ++failed;
      std::printf("FAIL %s\n", c.name.c_str());
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}

}  // namespace check

#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)
#define TEST(name)                                                           \
  static void name();                                                        \
  static check::Register CHECK_CAT(register_, name)(#name, name);           \
  static void name()

#define CHECK(cond) \
  do { if (!(cond)) check::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed"); } while (0)

#define CHECK_EQ(a, b)                                                                                   \
  do {                                                                                                   \
    auto&& check_a_ = (a);                                                                               \
    auto&& check_b_ = (b);                                                                               \
    if (!(check_a_ == check_b_))                                                                         \
      check::fail(__FILE__, __LINE__,                                                                    \
                  std::string(#a " == " #b ": ") + check::show(check_a_) + " != " + check::show(check_b_)); \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                              \
  do {                                                                                                     \
    double check_a_ = (a), check_b_ = (b);                                                                 \
    if (!(check_a_ - check_b_ <= (tol) && check_b_ - check_a_ <= (tol)))                                   \
      check::fail(__FILE__, __LINE__, std::string(#a " ~ " #b ": ") + check::show(check_a_) + " vs " +     \
                                          check::show(check_b_) + " (tolerance " + check::show(tol) + ")"); \
  } while (0)

// The expression must throw `type` whose what() contains `text`.
#define CHECK_THROWS(expr, type, text)                                                                     \
  do {                                                                                                     \
    bool check_threw_ = false;                                                                             \
    try {                                                                                                  \
      (void)(expr);                                                                                        \
    } catch (const type& e) {                                                                              \
      check_threw_ = true;                                                                                 \
      if (std::string(e.what()).find(text) == std::string::npos)                                           \
        check::fail(__FILE__, __LINE__, std::string(#expr " threw '") + e.what() + "', wanted '" + (text) + "'"); \
    } catch (const std::exception& e) {                                                                    \
      check_threw_ = true;                                                                                 \
      check::fail(__FILE__, __LINE__, std::string(#expr " threw another type: ") + e.what());              \
    }                                                                                                      \
    if (!check_threw_) check::fail(__FILE__, __LINE__, #expr " did not throw " #type);                     \
  } while (0)
