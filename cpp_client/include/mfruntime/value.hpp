// A small generic value for control messages (msgpack maps of the protocol), independent of msgpack-cxx.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace mfruntime {

using Bytes = std::vector<std::uint8_t>;

/// nil, bool, integer, float, string, binary, array or map (string keys, insertion order kept).
class Value {
 public:
  enum class Type { Nil, Bool, Int, Float, String, Binary, Array, Map };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::Bool), b_(b) {}
  Value(int i) : type_(Type::Int), i_(i) {}
  Value(long i) : type_(Type::Int), i_(i) {}
  Value(long long i) : type_(Type::Int), i_(i) {}
  Value(double f) : type_(Type::Float), f_(f) {}
  Value(const char* s) : type_(Type::String), s_(s) {}
  Value(std::string s) : type_(Type::String), s_(std::move(s)) {}
  Value(Bytes b) : type_(Type::Binary), bin_(std::move(b)) {}

  static Value array(std::vector<Value> items = {});
  static Value map(std::initializer_list<std::pair<std::string, Value>> items = {});

  Type type() const { return type_; }
  static const char* type_name(Type t);
  const char* type_name() const { return type_name(type_); }
  bool is_nil() const { return type_ == Type::Nil; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_map() const { return type_ == Type::Map; }

  // Typed access; each throws ProtocolError naming the wanted and the actual type.
  bool as_bool() const;
  std::int64_t as_int() const;
  double as_double() const;  // an integer is accepted
  const std::string& as_string() const;
  const Bytes& as_bytes() const;

  // Arrays and maps.
  std::size_t size() const;                 // items of an array or map, 0 otherwise
  const Value& operator[](std::size_t i) const;  // array item (or map value by position)
  const std::vector<std::string>& keys() const { return keys_; }
  const Value* find(const std::string& key) const;  // nullptr when absent or not a map
  const Value& at(const std::string& key) const;    // throws ProtocolError when absent
  void push_back(Value v);                           // append to an array
  void set(const std::string& key, Value v);         // replace or append a map entry

  bool operator==(const Value& o) const;
  bool operator!=(const Value& o) const { return !(*this == o); }

  /// JSON-like text, for messages and logs (binaries as {"$hex": ...}, long ones shortened).
  std::string to_string() const;

 private:
  Type type_ = Type::Nil;
  bool b_ = false;
  std::int64_t i_ = 0;
  double f_ = 0.0;
  std::string s_;
  Bytes bin_;
  std::vector<std::string> keys_;  // map keys, parallel to items_
  std::vector<Value> items_;       // array items or map values
};

/// msgpack bytes → Value (the whole buffer must be exactly one message). Throws ProtocolError
/// ("not a msgpack message (...)") for truncated or malformed input, or non-string map keys.
Value unpack_value(const std::uint8_t* data, std::size_t size);
inline Value unpack_value(const Bytes& b) { return unpack_value(b.data(), b.size()); }

/// Value → msgpack bytes (binaries as bin, strings as str, floats as float64, smallest integers).
Bytes pack_value(const Value& v);

}  // namespace mfruntime
