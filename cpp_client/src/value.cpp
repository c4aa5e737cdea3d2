// Value: typed access, comparison, text form, and its msgpack encoding (msgpack-cxx stays inside this file).
#include "mfruntime/value.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <msgpack.hpp>

#include "mfruntime/errors.hpp"

namespace mfruntime {

Value Value::array(std::vector<Value> items) {
  Value v;
  v.type_ = Type::Array;
  v.items_ = std::move(items);
  return v;
}

Value Value::map(std::initializer_list<std::pair<std::string, Value>> items) {
  Value v;
  v.type_ = Type::Map;
  for (const auto& kv : items) v.set(kv.first, kv.second);
  return v;
}

const char* Value::type_name(Type t) {
  switch (t) {
    case Type::Nil: return "nil";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "str";
    case Type::Binary: return "bin";
    case Type::Array: return "array";
    case Type::Map: return "map";
  }
  return "?";
}

static ProtocolError wrong_type(const char* want, const Value& v) {
  return ProtocolError(std::string("expected ") + want + ", got " + v.type_name() + " " + v.to_string());
}

bool Value::as_bool() const {
  if (type_ != Type::Bool) throw wrong_type("bool", *this);
  return b_;
}

std::int64_t Value::as_int() const {
  if (type_ != Type::Int) throw wrong_type("int", *this);
  return i_;
}

double Value::as_double() const {
  if (type_ == Type::Float) return f_;
  if (type_ == Type::Int) return static_cast<double>(i_);
  throw wrong_type("float", *this);
}

const std::string& Value::as_string() const {
  if (type_ != Type::String) throw wrong_type("str", *this);
  return s_;
}

const Bytes& Value::as_bytes() const {
  if (type_ != Type::Binary) throw wrong_type("bin", *this);
  return bin_;
}

std::size_t Value::size() const {
  return (type_ == Type::Array || type_ == Type::Map) ? items_.size() : 0;
}

const Value& Value::operator[](std::size_t i) const {
  if (i >= size()) throw ProtocolError("index " + std::to_string(i) + " out of range of " + to_string());
  return items_[i];
}

const Value* Value::find(const std::string& key) const {
  if (type_ != Type::Map) return nullptr;
  for (std::size_t i = 0; i < keys_.size(); ++i)
    if (keys_[i] == key) return &items_[i];
  return nullptr;
}

const Value& Value::at(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw ProtocolError("the message has no field '" + key + "': " + to_string());
  return *v;
}

void Value::push_back(Value v) {
  if (type_ == Type::Nil) type_ = Type::Array;
  if (type_ != Type::Array) throw wrong_type("array", *this);
  items_.push_back(std::move(v));
}

void Value::set(const std::string& key, Value v) {
  if (type_ == Type::Nil) type_ = Type::Map;
  if (type_ != Type::Map) throw wrong_type("map", *this);
  for (std::size_t i = 0; i < keys_.size(); ++i)
    if (keys_[i] == key) {
      items_[i] = std::move(v);
      return;
    }
  keys_.push_back(key);
  items_.push_back(std::move(v));
}

bool Value::operator==(const Value& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::Nil: return true;
    case Type::Bool: return b_ == o.b_;
    case Type::Int: return i_ == o.i_;
    case Type::Float: return f_ == o.f_ || (std::isnan(f_) && std::isnan(o.f_));
    case Type::String: return s_ == o.s_;
    case Type::Binary: return bin_ == o.bin_;
    case Type::Array: return items_ == o.items_;
    case Type::Map: {  // same keys with equal values, in any order
      if (keys_.size() != o.keys_.size()) return false;
      for (std::size_t i = 0; i < keys_.size(); ++i) {
        const Value* other = o.find(keys_[i]);
        if (!other || !(items_[i] == *other)) return false;
      }
      return true;
    }
  }
  return false;
}

static void quote(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

static void to_text(std::string& out, const Value& v) {
  switch (v.type()) {
    case Value::Type::Nil: out += "null"; break;
    case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; break;
    case Value::Type::Int: out += std::to_string(v.as_int()); break;
    case Value::Type::Float: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v.as_double());
      out += buf;
      break;
    }
    case Value::Type::String: quote(out, v.as_string()); break;
    case Value::Type::Binary: {
      const Bytes& b = v.as_bytes();
      out += "{\"$hex\": \"";
      static const char* hex = "0123456789abcdef";
      std::size_t n = b.size() > 32 ? 32 : b.size();
      for (std::size_t i = 0; i < n; ++i) {
        out += hex[b[i] >> 4];
        out += hex[b[i] & 15];
      }
      if (n < b.size()) out += "...(" + std::to_string(b.size()) + " bytes)";
      out += "\"}";
      break;
    }
    case Value::Type::Array:
      out += '[';
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) out += ", ";
        to_text(out, v[i]);
      }
      out += ']';
      break;
    case Value::Type::Map:
      out += '{';
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) out += ", ";
        quote(out, v.keys()[i]);
        out += ": ";
        to_text(out, v[i]);
      }
      out += '}';
      break;
  }
}

std::string Value::to_string() const {
  std::string out;
  to_text(out, *this);
  return out;
}

// --- msgpack -------------------------------------------------------------------------------------

static Value from_object(const msgpack::object& o, int depth) {
  if (depth > 64) throw ProtocolError("not a msgpack message (nested more than 64 levels)");
  switch (o.type) {
    case msgpack::type::NIL: return Value();
    case msgpack::type::BOOLEAN: return Value(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw ProtocolError("integer " + std::to_string(o.via.u64) + " is out of range (above 2^63-1)");
      return Value(static_cast<long long>(o.via.u64));
    case msgpack::type::NEGATIVE_INTEGER: return Value(static_cast<long long>(o.via.i64));
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return Value(o.via.f64);
    case msgpack::type::STR: return Value(std::string(o.via.str.ptr, o.via.str.size));
    case msgpack::type::BIN:
      return Value(Bytes(reinterpret_cast<const std::uint8_t*>(o.via.bin.ptr),
                         reinterpret_cast<const std::uint8_t*>(o.via.bin.ptr) + o.via.bin.size));
    case msgpack::type::ARRAY: {
      std::vector<Value> items;
      items.reserve(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) items.push_back(from_object(o.via.array.ptr[i], depth + 1));
      return Value::array(std::move(items));
    }
    case msgpack::type::MAP: {
      Value m = Value::map();
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const msgpack::object_kv& kv = o.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR)
          throw ProtocolError("map keys must be strings (got a msgpack key of type " + std::to_string(kv.key.type) + ")");
        m.set(std::string(kv.key.via.str.ptr, kv.key.via.str.size), from_object(kv.val, depth + 1));
      }
      return m;
    }
    case msgpack::type::EXT: throw ProtocolError("msgpack extension types are not part of the protocol");
  }
  throw ProtocolError("not a msgpack message (unknown object type)");
}

Value unpack_value(const std::uint8_t* data, std::size_t size) {
  if (size == 0) throw ProtocolError("not a msgpack message (empty)");
  msgpack::object_handle oh;
  std::size_t offset = 0;
  try {
    // The protocol's limits: strings and binaries 32 MiB, arrays 100 000 items, maps 1 000 keys.
    const std::size_t mib32 = 32u * 1024u * 1024u;
    msgpack::unpack_limit limit(100000, 1000, mib32, mib32, 0, 64);
    oh = msgpack::unpack(reinterpret_cast<const char*>(data), size, offset, nullptr, nullptr, limit);
  } catch (const msgpack::insufficient_bytes&) {
    throw ProtocolError("not a msgpack message (truncated: " + std::to_string(size) + " bytes)");
  } catch (const std::exception& e) {
    throw ProtocolError(std::string("not a msgpack message (") + e.what() + ")");
  }
  if (offset != size)
    throw ProtocolError("not a msgpack message (" + std::to_string(size - offset) + " bytes after the end of the message)");
  return from_object(oh.get(), 0);
}

static void pack(msgpack::sbuffer& buf, msgpack::packer<msgpack::sbuffer>& pk, const Value& v) {
  switch (v.type()) {
    case Value::Type::Nil: pk.pack_nil(); break;
    case Value::Type::Bool: v.as_bool() ? pk.pack_true() : pk.pack_false(); break;
    case Value::Type::Int: pk.pack_int64(v.as_int()); break;
    case Value::Type::Float: {
      // Always float64 (msgpack-cxx's pack_double writes integral values as integers; the protocol's pts
      // must stay a float, as Python writes it).
      std::uint64_t bits;
      double d = v.as_double();
      std::memcpy(&bits, &d, sizeof bits);
      char raw[9];
      raw[0] = static_cast<char>(0xcb);
      for (int i = 0; i < 8; ++i) raw[1 + i] = static_cast<char>((bits >> (56 - 8 * i)) & 0xff);
      buf.write(raw, sizeof raw);
      break;
    }
    case Value::Type::String: {
      const std::string& s = v.as_string();
      pk.pack_str(static_cast<std::uint32_t>(s.size()));
      pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
      break;
    }
    case Value::Type::Binary: {
      const Bytes& b = v.as_bytes();
      pk.pack_bin(static_cast<std::uint32_t>(b.size()));
      pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<std::uint32_t>(b.size()));
      break;
    }
    case Value::Type::Array:
      pk.pack_array(static_cast<std::uint32_t>(v.size()));
      for (std::size_t i = 0; i < v.size(); ++i) pack(buf, pk, v[i]);
      break;
    case Value::Type::Map:
      pk.pack_map(static_cast<std::uint32_t>(v.size()));
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string& k = v.keys()[i];
        pk.pack_str(static_cast<std::uint32_t>(k.size()));
        pk.pack_str_body(k.data(), static_cast<std::uint32_t>(k.size()));
        pack(buf, pk, v[i]);
      }
      break;
  }
}

Bytes pack_value(const Value& v) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pack(buf, pk, v);
  return Bytes(reinterpret_cast<const std::uint8_t*>(buf.data()),
               reinterpret_cast<const std::uint8_t*>(buf.data()) + buf.size());
}

}  // namespace mfruntime
