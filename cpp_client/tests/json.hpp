// A minimal JSON reader for the test vectors' expected values: JSON → mfruntime::Value
// (null, true/false, integers as Int, other numbers as Float, strings, arrays, objects;
// an object {"$hex": "..."} becomes a Binary, as tests/vectors writes byte strings).
#pragma once

#include <string>

#include "mfruntime/value.hpp"

namespace testjson {
mfruntime::Value parse(const std::string& text);  // throws std::runtime_error with the offset on bad input
mfruntime::Value parse_file(const std::string& path);
}  // namespace testjson
