// Exceptions thrown by the mfruntime client library.
#pragma once

#include <stdexcept>
#include <string>

namespace mfruntime {

/// Base of every error the library throws on purpose.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A message that does not follow docs/PROTOCOL.md (bad stream chunk, unreadable reply, ...).
class ProtocolError : public Error {
 public:
  explicit ProtocolError(const std::string& what) : Error(what) {}
};

/// The server answered a request with status "error"; what() is the server's error text.
class ServerError : public Error {
 public:
  explicit ServerError(const std::string& what) : Error(what) {}
};

/// No reply arrived within the request timeout.
class TimeoutError : public Error {
 public:
  explicit TimeoutError(const std::string& what) : Error(what) {}
};

}  // namespace mfruntime
