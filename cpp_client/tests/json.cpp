#include "json.hpp"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace testjson {

using mfruntime::Value;

namespace {

struct Reader {
  const std::string& s;
  std::size_t i = 0;

  [[noreturn]] void error(const std::string& what) const {
    throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(i));
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) error(std::string("expected '") + c + "'");
  }
  bool word(const char* w) {
    std::size_t n = std::char_traits<char>::length(w);
    if (s.compare(i, n, w) == 0) {
      i += n;
      return true;
    }
    return false;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  unsigned hex4() {
    if (i + 4 > s.size()) error("short \\u escape");
    unsigned v = static_cast<unsigned>(std::stoul(s.substr(i, 4), nullptr, 16));
    i += 4;
    return v;
  }

  std::string string() {
    ws();
    if (i >= s.size() || s[i] != '"') error("expected a string");
    ++i;
    std::string out;
    while (true) {
      if (i >= s.size()) error("unterminated string");
      char c = s[i++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) error("bad escape");
      char e = s[i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
            if (!word("\\u")) error("lone surrogate");
            unsigned lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: error("bad escape");
      }
    }
    return out;
  }

  static mfruntime::Bytes unhex(const std::string& h) {
    if (h.size() % 2) throw std::runtime_error("JSON: odd-length $hex");
    mfruntime::Bytes b(h.size() / 2);
    for (std::size_t k = 0; k < b.size(); ++k)
      b[k] = static_cast<std::uint8_t>(std::stoul(h.substr(2 * k, 2), nullptr, 16));
    return b;
  }

  Value value() {
    ws();
    if (i >= s.size()) error("unexpected end");
    char c = s[i];
    if (c == '{') {
      ++i;
      Value m = Value::map();
      if (!eat('}')) {
        do {
          std::string k = string();
          expect(':');
          m.set(k, value());
        } while (eat(','));
        expect('}');
      }
      if (m.size() == 1 && m.keys()[0] == "$hex") return Value(unhex(m[0].as_string()));
      return m;
    }
    if (c == '[') {
      ++i;
      Value a = Value::array();
      if (!eat(']')) {
        do a.push_back(value());
        while (eat(','));
        expect(']');
      }
      return a;
    }
    if (c == '"') return Value(string());
    if (word("null")) return Value();
    if (word("true")) return Value(true);
    if (word("false")) return Value(false);
    std::size_t start = i;
    if (s[i] == '-') ++i;
    bool is_float = false;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.' || s[i] == 'e' ||
                            s[i] == 'E' || s[i] == '+' || s[i] == '-')) {
      if (s[i] == '.' || s[i] == 'e' || s[i] == 'E') is_float = true;
      ++i;
    }
    std::string num = s.substr(start, i - start);
    if (num.empty() || num == "-") error("unexpected character");
    if (is_float) return Value(std::strtod(num.c_str(), nullptr));
    return Value(static_cast<long long>(std::stoll(num)));
  }
};

}  // namespace

Value parse(const std::string& text) {
  Reader r{text};
  Value v = r.value();
  r.ws();
  if (r.i != text.size()) r.error("trailing characters");
  return v;
}

Value parse_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << f.rdbuf();
  return parse(s.str());
}

}  // namespace testjson
